package forge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, cpu, mem string, mods ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
				corev1.ResourcePods: resource.MustParse("10"),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo:   corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64"},
		},
	}
	for _, m := range mods {
		m(n)
	}
	return n
}

func pod(name, nodeName, cpu string, owned bool, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if owned {
		p.Labels = testOwner.Labels()
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func rl(cpu, mem, pods string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods: resource.MustParse(pods)}
}

func TestComputeCapacity(t *testing.T) {
	cordoned := func(n *corev1.Node) { n.Spec.Unschedulable = true }
	tainted := func(effect corev1.TaintEffect) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: effect}} }
	}
	notReady := func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }
	finished := func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }
	gpu := func(n *corev1.Node) { n.Status.Allocatable["nvidia.com/gpu"] = resource.MustParse("4") }

	tests := []struct {
		name        string
		nodes       []*corev1.Node
		pods        []*corev1.Pod
		want        corev1.ResourceList
		wantLargest corev1.ResourceList
		wantUsable  []string
	}{{
		name:        "sum of usable nodes",
		nodes:       []*corev1.Node{node("a", "4", "8Gi"), node("b", "2", "4Gi")},
		want:        rl("6", "12Gi", "20"),
		wantLargest: rl("4", "8Gi", "10"),
		wantUsable:  []string{"a", "b"},
	}, {
		name: "cordoned, NoSchedule, NoExecute and not-ready nodes do not count; PreferNoSchedule does",
		nodes: []*corev1.Node{node("a", "4", "8Gi", cordoned), node("b", "4", "8Gi", tainted(corev1.TaintEffectNoSchedule)),
			node("c", "4", "8Gi", tainted(corev1.TaintEffectNoExecute)), node("d", "4", "8Gi", notReady),
			node("e", "1", "1Gi", tainted(corev1.TaintEffectPreferNoSchedule))},
		want:        rl("1", "1Gi", "10"),
		wantLargest: rl("1", "1Gi", "10"),
		wantUsable:  []string{"e"},
	}, {
		name:  "requests of pods Tether did not create are subtracted, ours are not; fragments count both",
		nodes: []*corev1.Node{node("a", "4", "8Gi"), node("b", "4", "8Gi")},
		pods: []*corev1.Pod{pod("user", "a", "1", false), pod("ours", "a", "2", true), pod("done", "b", "3", false, finished),
			pod("pending", "", "3", false), pod("on-gone-node", "x", "3", false)},
		want:        rl("7", "16Gi", "19"),
		wantLargest: rl("4", "8Gi", "10"),
		wantUsable:  []string{"a", "b"},
	}, {
		name:        "never negative",
		nodes:       []*corev1.Node{node("a", "1", "1Gi")},
		pods:        []*corev1.Pod{pod("big", "a", "3", false)},
		want:        rl("0", "1Gi", "9"),
		wantLargest: rl("0", "1Gi", "9"),
		wantUsable:  []string{"a"},
	}, {
		name:  "extended resources",
		nodes: []*corev1.Node{node("a", "1", "1Gi", gpu), node("b", "1", "1Gi")},
		want: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi"),
			corev1.ResourcePods: resource.MustParse("20"), "nvidia.com/gpu": resource.MustParse("4")},
		wantLargest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"),
			corev1.ResourcePods: resource.MustParse("10"), "nvidia.com/gpu": resource.MustParse("4")},
		wantUsable: []string{"a", "b"},
	}, {
		name:        "no usable node",
		nodes:       []*corev1.Node{node("a", "1", "1Gi", cordoned)},
		want:        corev1.ResourceList{},
		wantLargest: corev1.ResourceList{},
	}}
	cmpQ := cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ComputeCapacity(tt.nodes, tt.pods, testOwner)
			if diff := cmp.Diff(tt.want, got.Allocatable, cmpQ); diff != "" {
				t.Errorf("allocatable (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLargest, got.Fragments.LargestFree, cmpQ); diff != "" {
				t.Errorf("largest free (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantUsable, got.UsableNodes); diff != "" {
				t.Errorf("usable (-want +got):\n%s", diff)
			}
			if got.Fragments.UsableNodes != len(tt.wantUsable) {
				t.Errorf("fragments count %d", got.Fragments.UsableNodes)
			}
		})
	}
}

func TestPodStatus(t *testing.T) {
	t0, t1 := metav1.Unix(100, 0), metav1.Unix(200, 0)
	host := makePod(func(p *corev1.Pod) {
		p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/gate"}}
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t0},
			{Type: "example.com/gate", Status: corev1.ConditionFalse},
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI"},
		}
	})
	member := makePod(func(p *corev1.Pod) {
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7", HostIP: "10.1.0.1", NominatedNodeName: "x",
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t1},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t1},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, RestartCount: 2}}}
	})
	got := PodStatus(host, member)
	want := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7", HostIP: "10.1.0.1",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t0},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: t1, Reason: "ReadinessGatesNotReady",
				Message: `the status of pod readiness gate "example.com/gate" is not "True"`},
			{Type: "example.com/gate", Status: corev1.ConditionFalse},
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI"},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, RestartCount: 2}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// Same input twice: same output (no spurious host writes).
	host.Status = got
	if diff := cmp.Diff(got, PodStatus(host, member)); diff != "" {
		t.Errorf("not stable (-first +second):\n%s", diff)
	}
}
