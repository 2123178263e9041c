package memberunschedulable

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tetherkube/tether/api"
)

func TestRequests(t *testing.T) {
	p := stuckPod("p", "n", "1", withInit("2"), func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "d", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}}})
		p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}
	})
	got := requests(p)
	// max(1+0.5, 2) + 0.25 CPU; 1Gi memory.
	if got.Cpu().MilliValue() != 2250 || got.Memory().Value() != 1<<30 {
		t.Errorf("requests %v", got)
	}
}

func TestJudge(t *testing.T) {
	noDigest := virtualNode("m2", "4", func(n *corev1.Node) { delete(n.Annotations, api.AnnotationFragments) })
	noUsable := virtualNode("m2", "4", func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, api.NoUsableNodesTaint()) })
	notReady := virtualNode("m2", "4", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse })
	smallMem := virtualNode("m2", "4", func(n *corev1.Node) {
		n.Annotations[api.AnnotationFragments] = api.Fragments{UsableNodes: 1, LargestFree: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("1Gi")}}.Encode()
	})
	big := stuckPod("p", "tether-m1", "3", func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("2Gi")
	})
	for _, tt := range []struct {
		name string
		node *corev1.Node
		pod  *corev1.Pod
		want string
	}{
		{"fits", virtualNode("m2", "4"), big, ""},
		{"no digest", noDigest, big, "no " + api.AnnotationFragments + " digest"},
		{"no usable nodes taint", noUsable, big, "taint " + api.TaintNoUsableNodes + ":NoSchedule"},
		{"not ready", notReady, big, "not Ready"},
		{"memory short", smallMem, big, "at most 1Gi memory free on one node"},
		{"cpu short", virtualNode("m2", "2500m"), big, "at most 2500m CPU free on one node"},
	} {
		f := judge(tt.pod, requests(tt.pod), tt.node)
		if diff := cmp.Diff(tt.want, f.why); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	msg := noFitMessage(requests(big), []fit{judge(big, requests(big), smallMem), judge(big, requests(big), virtualNode("m3", "1"))})
	if want := "no other member has a node with 3 CPU and 2Gi memory free (tether-m2: at most 1Gi memory free on one node; tether-m3: at most 1 CPU free on one node)"; msg != want {
		t.Errorf("message\n%s\nwant\n%s", msg, want)
	}
}
