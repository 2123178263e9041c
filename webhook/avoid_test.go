package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

func virtualNode(member string) *corev1.Node {
	name := api.NodeName(api.DefaultNodePrefix, member)
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: api.NodeLabels(member, name)}}
}

func ownedBy(uid string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID("uid-" + uid), Controller: ptr.To(true)}}
	}
}

func TestAvoidRecord(t *testing.T) {
	now := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	rec := api.Avoid{}
	rec.Add("uid-a", api.AvoidOwner{Kind: "ReplicaSet", Namespace: "ns", Name: "rs"}, "m1", now.Add(time.Minute))
	rec.Add("uid-all", api.AvoidOwner{Kind: "ReplicaSet", Namespace: "ns", Name: "rs"}, "m1", now.Add(time.Minute))
	rec.Add("uid-all", api.AvoidOwner{Kind: "ReplicaSet", Namespace: "ns", Name: "rs"}, "m2", now.Add(time.Minute))
	rec.Add("uid-old", api.AvoidOwner{Kind: "ReplicaSet", Namespace: "ns", Name: "rs"}, "m1", now.Add(-time.Second))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: api.DefaultNamespace, Name: api.DefaultAvoidConfigMap}, Data: rec.Encode()}
	client := fake.NewClientset(cm, virtualNode("m1"), virtualNode("m2"))
	r := NewAvoidRecord(client, api.DefaultNamespace, api.DefaultAvoidConfigMap)
	r.now = func() time.Time { return now }
	r.Start(t.Context())
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return r.HasSynced(), nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pod  *corev1.Pod
		want []string
	}{
		{"its owner avoids m1", makePod(ownedBy("a")), []string{"m1"}},
		{"avoiding every member is avoiding none", makePod(ownedBy("all")), nil},
		{"expired", makePod(ownedBy("old")), nil},
		{"no owner", makePod(), nil},
	} {
		if diff := cmp.Diff(tt.want, r.Members(tt.pod)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestMutateAvoid(t *testing.T) {
	o := DefaultOptions()
	o.Avoid = func(*corev1.Pod) []string { return []string{"m1"} }
	notIn := corev1.NodeSelectorRequirement{Key: api.LabelMember, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"m1"}}
	for _, tt := range []struct {
		name string
		pod  *corev1.Pod
		want []corev1.NodeSelectorTerm
	}{{
		name: "no affinity: a required term of its own",
		pod:  makePod(nodeSelector("disktype", "ssd")),
		want: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{notIn}}},
	}, {
		name: "every required term gets it (host-level terms stay, the rest is parked first)",
		pod: makePod(requiredTerms([]corev1.NodeSelectorRequirement{req(api.LabelMember, "m1", "m2"), req("zone", "a")},
			[]corev1.NodeSelectorRequirement{req(api.NodeTypeKey, api.NodeType)})),
		want: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{req(api.LabelMember, "m1", "m2"), notIn}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{req(api.NodeTypeKey, api.NodeType), notIn}},
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Mutate(tt.pod, o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms); diff != "" {
				t.Errorf("terms (-want +got):\n%s", diff)
			}
			again, err := Mutate(got, o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("not idempotent (-first +second):\n%s", diff)
			}
			applyPatch(t, tt.pod, got)
		})
	}
}
