package memberfit

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selector is what a member pod asks of a node's labels: its nodeSelector and its required node affinity. Terms on
// kubernetes.io/hostname and on metadata.name are taken as met: the summary has no node names (and the member
// decides among its nodes).
type selector struct {
	// all must hold (nodeSelector).
	all []requirement
	// terms are ORed, each a list of requirements that must all hold; none means no affinity.
	terms [][]requirement
	// noTerm is a required affinity with no term: it matches no node.
	noTerm bool
}

type requirement struct {
	key    string
	op     corev1.NodeSelectorOperator
	values []string
}

func newSelector(nodeSelector map[string]string, affinity *corev1.Affinity) selector {
	var s selector
	for _, k := range slices.Sorted(maps.Keys(nodeSelector)) {
		if k == corev1.LabelHostname {
			continue
		}
		s.all = append(s.all, requirement{key: k, op: corev1.NodeSelectorOpIn, values: []string{nodeSelector[k]}})
	}
	if affinity == nil || affinity.NodeAffinity == nil || affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return s
	}
	terms := affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		s.noTerm = true
		return s
	}
	for _, t := range terms {
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			continue // an empty term matches no node
		}
		reqs := []requirement{}
		for _, e := range t.MatchExpressions {
			if e.Key == corev1.LabelHostname {
				continue
			}
			reqs = append(reqs, requirement{key: e.Key, op: e.Operator, values: e.Values})
		}
		for _, f := range t.MatchFields {
			if f.Key != metav1.ObjectNameField {
				reqs = append(reqs, requirement{key: f.Key, op: f.Operator, values: f.Values})
			}
		}
		s.terms = append(s.terms, reqs)
	}
	if len(s.terms) == 0 {
		s.noTerm = true
	}
	return s
}

// matches reports whether a class of nodes with these labels satisfies the selector; requirements on ignored keys
// (labels the summary left out) are taken as met.
func (s selector) matches(labels map[string]string, ignored []string) bool {
	if s.noTerm {
		return false
	}
	for _, r := range s.all {
		if !r.matches(labels, ignored) {
			return false
		}
	}
	if len(s.terms) == 0 {
		return true
	}
	for _, t := range s.terms {
		ok := true
		for _, r := range t {
			if !r.matches(labels, ignored) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (r requirement) matches(labels map[string]string, ignored []string) bool {
	if slices.Contains(ignored, r.key) {
		return true
	}
	v, has := labels[r.key]
	switch r.op {
	case corev1.NodeSelectorOpIn:
		return has && slices.Contains(r.values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !slices.Contains(r.values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.op == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

// String is the selector as people read it: "disktype=ssd", "zone in (a, b) or gpu exists"; "" when it asks
// nothing.
func (s selector) String() string {
	if s.noTerm {
		return "a node affinity no node matches"
	}
	var all []string
	for _, r := range s.all {
		all = append(all, r.String())
	}
	var terms []string
	for _, t := range s.terms {
		var parts []string
		for _, r := range t {
			parts = append(parts, r.String())
		}
		if len(parts) > 0 {
			terms = append(terms, strings.Join(parts, ", "))
		}
	}
	if len(terms) > 0 {
		alt := strings.Join(terms, " or ")
		if len(terms) > 1 && len(all) > 0 {
			alt = "(" + alt + ")"
		}
		all = append(all, alt)
	}
	return strings.Join(all, ", ")
}

func (r requirement) String() string {
	switch r.op {
	case corev1.NodeSelectorOpIn:
		if len(r.values) == 1 {
			return r.key + "=" + r.values[0]
		}
		return r.key + " in (" + strings.Join(r.values, ", ") + ")"
	case corev1.NodeSelectorOpNotIn:
		if len(r.values) == 1 {
			return r.key + "!=" + r.values[0]
		}
		return r.key + " not in (" + strings.Join(r.values, ", ") + ")"
	case corev1.NodeSelectorOpExists:
		return r.key
	case corev1.NodeSelectorOpDoesNotExist:
		return "no " + r.key
	case corev1.NodeSelectorOpGt:
		return r.key + ">" + strings.Join(r.values, "")
	case corev1.NodeSelectorOpLt:
		return r.key + "<" + strings.Join(r.values, "")
	}
	return r.key + " " + string(r.op) + " " + strings.Join(r.values, ", ")
}
