package memberunschedulable

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/utils/ptr"
	deschedulerapi "sigs.k8s.io/descheduler/pkg/api"
	"sigs.k8s.io/descheduler/pkg/descheduler/evictions"
	"sigs.k8s.io/descheduler/pkg/framework/plugins/defaultevictor"
	frameworktesting "sigs.k8s.io/descheduler/pkg/framework/testing"
	frameworktypes "sigs.k8s.io/descheduler/pkg/framework/types"

	"github.com/tetherkube/tether/api"
)

var now = time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)

type nodeOpt func(*corev1.Node)

// virtualNode is tether-<member>, Ready, with largest free CPU cpu on one member node.
func virtualNode(member, cpu string, opts ...nodeOpt) *corev1.Node {
	name := api.NodeName(api.DefaultNodePrefix, member)
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: api.NodeLabels(member, name), Annotations: map[string]string{
			api.AnnotationFragments: api.Fragments{UsableNodes: 3, LargestFree: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("100")}}.Encode(),
		}},
		Spec:   corev1.NodeSpec{Taints: []corev1.Taint{api.Taint()}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func realNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

func cordoned(n *corev1.Node) { n.Spec.Unschedulable = true }

type podOpt func(*corev1.Pod)

// stuckPod is a ReplicaSet's pod on node asking for cpu, unschedulable in its member for 60 s.
func stuckPod(name, node, cpu string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"},
			CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Minute)),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: "rs-uid",
				Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: node, Tolerations: api.Tolerations(300), Containers: []corev1.Container{{Name: "c", Image: "i",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, LastTransitionTime: metav1.NewTime(now.Add(-time.Minute))}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func stuckFor(d time.Duration) podOpt {
	return func(p *corev1.Pod) { p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-d)) }
}

func bare(p *corev1.Pod) { p.OwnerReferences = nil }

func owner(uid string) podOpt {
	return func(p *corev1.Pod) { p.OwnerReferences[0].UID = types.UID(uid); p.OwnerReferences[0].Name = uid }
}

// containerCreating: placed by the member, its container not started yet.
func containerCreating(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-10 * time.Minute))}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
}

func pinned(member string) podOpt {
	return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{api.LabelMember: member} }
}

func withInit(cpu string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "i",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}
	}
}

func pdb(allowed int32) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed},
	}
}

func avoidCM(data api.Avoid) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: api.DefaultNamespace, Name: api.DefaultAvoidConfigMap}, Data: data.Encode()}
}

func TestDeschedule(t *testing.T) {
	m1, m2 := virtualNode("m1", "2"), virtualNode("m2", "4")
	prior := api.Avoid{}
	prior.Add("rs-uid", api.AvoidOwner{Kind: "ReplicaSet", Namespace: "shop", Name: "web-1"}, "m2", now.Add(time.Minute))
	tests := []struct {
		name       string
		nodes      []*corev1.Node
		objects    []runtime.Object
		pods       []*corev1.Pod
		args       MemberUnschedulableArgs
		maxTotal   *uint
		wantEvict  []string
		wantEvents []string // "<reason>: <part of the message>"
		wantAvoid  map[string][]string
	}{{
		name:       "stuck in m1, m2 has a node with 4 CPU free: evicted, the owner avoids m1",
		nodes:      []*corev1.Node{m1, m2},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "3")},
		wantEvict:  []string{"p"},
		wantEvents: []string{ReasonEvicted + ": unschedulable in member m1 for 1m0s: evicted, tether-m2 can take it; new pods of ReplicaSet web-1 avoid m1 until 2026-12-02T05:05:00Z"},
		wantAvoid:  map[string][]string{"rs-uid": {"m1"}},
	}, {
		name:       "no other member has a node with 3 CPU free: not evicted, one event",
		nodes:      []*corev1.Node{m1, virtualNode("m2", "2")},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "3")},
		wantEvents: []string{ReasonNoMemberFits + ": no other member has a node with 3 CPU free (tether-m2: at most 2 CPU free on one node)"},
	}, {
		name:       "init container larger than the containers counts",
		nodes:      []*corev1.Node{m1, m2},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "1", withInit("5"))},
		wantEvents: []string{ReasonNoMemberFits + ": 5 CPU"},
	}, {
		name:  "unschedulable for less than unschedulableFor: untouched",
		nodes: []*corev1.Node{m1, m2},
		pods:  []*corev1.Pod{stuckPod("p", m1.Name, "3", stuckFor(10*time.Second))},
	}, {
		name:  "a pod on a real node: untouched",
		nodes: []*corev1.Node{realNode("real"), m2},
		pods:  []*corev1.Pod{stuckPod("p", "real", "1")},
	}, {
		name:  "merely ContainerCreating in the member: untouched",
		nodes: []*corev1.Node{m1, m2},
		pods:  []*corev1.Pod{stuckPod("p", m1.Name, "1", containerCreating)},
	}, {
		name:  "a namespace left out by the args: untouched",
		nodes: []*corev1.Node{m1, m2},
		pods:  []*corev1.Pod{stuckPod("p", m1.Name, "1")},
		args:  MemberUnschedulableArgs{Namespaces: &deschedulerapi.Namespaces{Exclude: []string{"shop"}}},
	}, {
		name:  "not matching the args' label selector: untouched",
		nodes: []*corev1.Node{m1, m2},
		pods:  []*corev1.Pod{stuckPod("p", m1.Name, "1")},
		args:  MemberUnschedulableArgs{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}},
	}, {
		name:       "avoidFor 0s: evicted without an avoid record",
		nodes:      []*corev1.Node{m1, m2},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "1")},
		args:       MemberUnschedulableArgs{AvoidFor: &metav1.Duration{}},
		wantEvict:  []string{"p"},
		wantEvents: []string{ReasonEvicted + ": evicted, tether-m2 can take it"},
	}, {
		name:  "no controller: untouched",
		nodes: []*corev1.Node{m1, m2},
		pods:  []*corev1.Pod{stuckPod("p", m1.Name, "1", bare)},
	}, {
		name:       "pinned to m1 by its own node selector: no other member matches",
		nodes:      []*corev1.Node{m1, m2},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "1", pinned("m1"))},
		wantEvents: []string{ReasonNoMemberFits + ": tether-m2: excluded by the pod's node selector or affinity"},
	}, {
		name:       "the only other member is cordoned",
		nodes:      []*corev1.Node{m1, virtualNode("m2", "4", cordoned)},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "1")},
		wantEvents: []string{ReasonNoMemberFits + ": tether-m2: cordoned"},
	}, {
		name:       "the only other member is avoided by this owner already",
		nodes:      []*corev1.Node{m1, m2},
		objects:    []runtime.Object{avoidCM(prior)},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "1")},
		wantEvents: []string{ReasonNoMemberFits + ": no other member to move it to"},
		wantAvoid:  map[string][]string{"rs-uid": {"m2"}},
	}, {
		name:       "a PodDisruptionBudget allows no disruption",
		nodes:      []*corev1.Node{m1, m2},
		objects:    []runtime.Object{pdb(0)},
		pods:       []*corev1.Pod{stuckPod("p", m1.Name, "1")},
		wantEvents: []string{ReasonBlocked + ": PodDisruptionBudget web allows no disruption"},
	}, {
		name:       "the evictor's total limit: one evicted, the other's avoid entry taken back",
		nodes:      []*corev1.Node{m1, m2},
		pods:       []*corev1.Pod{stuckPod("a", m1.Name, "1", owner("rs-a")), stuckPod("b", m1.Name, "1", owner("rs-b"), stuckFor(2*time.Minute))},
		maxTotal:   ptr.To[uint](1),
		wantEvict:  []string{"b"}, // the oldest goes first
		wantEvents: []string{ReasonEvicted + ": evicted, tether-m2 can take it", ReasonBlocked + ": not evicted this interval: maximum number of evicted pods"},
		wantAvoid:  map[string][]string{"rs-b": {"m1"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			objs := append([]runtime.Object{}, tc.objects...)
			for _, n := range tc.nodes {
				objs = append(objs, n)
			}
			for _, p := range tc.pods {
				objs = append(objs, p)
			}
			client := fake.NewClientset(objs...)
			var evicted []string
			client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() == "eviction" {
					if e, ok := a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction); ok {
						evicted = append(evicted, e.Name)
					}
				}
				return false, nil, nil
			})
			handle, _, err := frameworktesting.InitFrameworkHandle(ctx, client,
				evictions.NewOptions().WithMaxPodsToEvictTotal(tc.maxTotal), defaultevictor.DefaultEvictorArgs{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			args := tc.args
			plugin, err := New(ctx, &args, handle)
			if err != nil {
				t.Fatal(err)
			}
			p := plugin.(*MemberUnschedulable)
			p.now = func() time.Time { return now }
			rec := events.NewFakeRecorder(100)
			p.recorder = rec
			handle.SharedInformerFactory().Start(ctx.Done())
			handle.SharedInformerFactory().WaitForCacheSync(ctx.Done())

			// Twice: a pod that stays gets no second event.
			for range 2 {
				if st := p.Deschedule(ctx, tc.nodes); st != nil && st.Err != nil {
					t.Fatal(st.Err)
				}
				if len(tc.wantEvict) > 0 {
					break // an evicted pod is gone from the member; the fake does not delete it
				}
			}
			if diff := cmp.Diff(tc.wantEvict, evicted); diff != "" {
				t.Errorf("evicted (-want +got):\n%s", diff)
			}
			var got []string
			close(rec.Events)
			for e := range rec.Events {
				got = append(got, e)
			}
			if len(got) != len(tc.wantEvents) {
				t.Fatalf("events %q, want %d like %q", got, len(tc.wantEvents), tc.wantEvents)
			}
			for i, want := range tc.wantEvents {
				reason, part, _ := strings.Cut(want, ": ")
				if !strings.Contains(got[i], " "+reason+" ") || !strings.Contains(got[i], part) {
					t.Errorf("event %q, want reason %s with %q", got[i], reason, part)
				}
			}
			cm, err := client.CoreV1().ConfigMaps(api.DefaultNamespace).Get(ctx, api.DefaultAvoidConfigMap, metav1.GetOptions{})
			gotAvoid := map[string][]string{}
			if err == nil {
				a, err := api.ParseAvoid(cm.Data)
				if err != nil {
					t.Fatal(err)
				}
				for uid := range a {
					gotAvoid[uid] = a.Members(uid, now)
				}
			}
			if tc.wantAvoid == nil {
				tc.wantAvoid = map[string][]string{}
			}
			if diff := cmp.Diff(tc.wantAvoid, gotAvoid); diff != "" {
				t.Errorf("avoid record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	registerMetrics()
	decisions.Reset()
	ctx := t.Context()
	m1, m2 := virtualNode("m1", "2"), virtualNode("m2", "2")
	client := fake.NewClientset(m1, m2, stuckPod("p", m1.Name, "3"))
	handle, _, err := frameworktesting.InitFrameworkHandle(ctx, client, evictions.NewOptions(), defaultevictor.DefaultEvictorArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := New(ctx, &MemberUnschedulableArgs{}, handle)
	if err != nil {
		t.Fatal(err)
	}
	p := plugin.(*MemberUnschedulable)
	p.now, p.recorder = func() time.Time { return now }, events.NewFakeRecorder(10)
	handle.SharedInformerFactory().Start(ctx.Done())
	handle.SharedInformerFactory().WaitForCacheSync(ctx.Done())
	p.Deschedule(ctx, []*corev1.Node{m1, m2})
	got, err := testutil.GetCounterMetricValue(decisions.WithLabelValues(DecisionNoMemberFit, "m1"))
	if err != nil || got != 1 {
		t.Errorf("%s{decision=%s} = %v (%v), want 1", "tether_descheduler_member_unschedulable_total", DecisionNoMemberFit, got, err)
	}
}

func TestDefaultsAndValidation(t *testing.T) {
	a := &MemberUnschedulableArgs{}
	SetDefaults_MemberUnschedulableArgs(a)
	want := &MemberUnschedulableArgs{UnschedulableFor: &metav1.Duration{Duration: 30 * time.Second}, AvoidFor: &metav1.Duration{Duration: 5 * time.Minute},
		AvoidNamespace: "tether-system", AvoidConfigMap: "tether-avoid"}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if err := ValidateMemberUnschedulableArgs(a); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	bad := &MemberUnschedulableArgs{UnschedulableFor: &metav1.Duration{}, AvoidFor: &metav1.Duration{Duration: -time.Second},
		AvoidNamespace: "Not_A_Namespace", AvoidConfigMap: "bad/name",
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sometimes"}}}}
	bad.Namespaces = nil
	err := ValidateMemberUnschedulableArgs(bad)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, field := range []string{"unschedulableFor", "avoidFor", "avoidNamespace", "avoidConfigMap", "labelSelector"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("errors lack %s: %v", field, err)
		}
	}
}

var _ frameworktypes.DeschedulePlugin = &MemberUnschedulable{}
