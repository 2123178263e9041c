package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The "avoid this member" record: the descheduler evicted a pod that its member could not place, and the pods
// its controller creates next keep away from that member for a while.
const (
	// DefaultAvoidConfigMap is the ConfigMap in Tether's namespace that holds the record (see Avoid). tether-descheduler
	// writes it; tether-webhook reads it and adds a LabelMember NotIn requirement to new pods of the owners it names.
	DefaultAvoidConfigMap = "tether-avoid"
	// DeschedulerReportingController is the reportingController of the events tether-descheduler records on pods.
	DeschedulerReportingController = "tether.io/tether-descheduler"
)

// Avoid is the content of the avoid ConfigMap: per controller owner UID (the ReplicaSet, StatefulSet, Job… of an
// evicted pod; the data key), the members its new pods avoid and until when. Entries expire by themselves: a
// reader ignores what is past, the writer prunes it.
type Avoid map[string]AvoidEntry

// AvoidEntry is the record of one controller owner.
type AvoidEntry struct {
	// Owner names the controller, for people reading the ConfigMap; the key is its UID.
	Owner AvoidOwner `json:"owner"`
	// Members maps a member to the time its avoidance ends.
	Members map[string]metav1.Time `json:"members"`
}

// AvoidOwner names a controller owner.
type AvoidOwner struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ParseAvoid decodes the avoid ConfigMap's data strictly. An entry that does not decode is left out and reported in
// the error; the others are returned all the same, so that one bad entry disables nothing else.
func ParseAvoid(data map[string]string) (Avoid, error) {
	out := Avoid{}
	var errs []error
	for _, uid := range slices.Sorted(maps.Keys(data)) {
		var e AvoidEntry
		if err := unmarshalStrict(data[uid], &e); err != nil {
			errs = append(errs, fmt.Errorf("configmap %s key %s: %w", DefaultAvoidConfigMap, uid, err))
			continue
		}
		out[uid] = e
	}
	return out, errors.Join(errs...)
}

// Encode is the ConfigMap data of a.
func (a Avoid) Encode() map[string]string {
	out := make(map[string]string, len(a))
	for uid, e := range a {
		b, _ := json.Marshal(e) // strings and times always marshal
		out[uid] = string(b)
	}
	return out
}

// Members are the members that new pods of ownerUID avoid at now, sorted.
func (a Avoid) Members(ownerUID string, now time.Time) []string {
	var out []string
	for m, until := range a[ownerUID].Members {
		if now.Before(until.Time) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// Add makes new pods of ownerUID avoid member until then (an avoidance that already lasts longer is kept).
func (a Avoid) Add(ownerUID string, owner AvoidOwner, member string, until time.Time) {
	e := a[ownerUID]
	e.Owner = owner
	if e.Members == nil {
		e.Members = map[string]metav1.Time{}
	}
	if cur, ok := e.Members[member]; !ok || cur.Time.Before(until) {
		e.Members[member] = metav1.NewTime(until.UTC().Truncate(time.Second))
	}
	a[ownerUID] = e
}

// Prune removes what has expired at now, and owners left with nothing.
func (a Avoid) Prune(now time.Time) {
	for uid, e := range a {
		maps.DeleteFunc(e.Members, func(_ string, until metav1.Time) bool { return !now.Before(until.Time) })
		if len(e.Members) == 0 {
			delete(a, uid)
		}
	}
}
