package forge

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
)

func summaryNode(name, cpu, mem string, labels map[string]string, opts ...func(*corev1.Node)) *corev1.Node {
	l := map[string]string{corev1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Status: corev1.NodeStatus{
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem), corev1.ResourcePods: resource.MustParse("110")},
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
	}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func summaryPod(node, cpu string) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}}}
}

func TestComputeSummary(t *testing.T) {
	ssd := map[string]string{"disktype": "ssd"}
	taint := corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
	nodes := []*corev1.Node{
		summaryNode("a", "4", "8Gi", nil), summaryNode("b", "4", "8Gi", nil), summaryNode("c", "2", "16Gi", nil),
		summaryNode("d", "8", "8Gi", ssd),
		summaryNode("e", "8", "8Gi", nil, func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{taint} }),
		summaryNode("cordoned", "64", "64Gi", nil, func(n *corev1.Node) { n.Spec.Unschedulable = true }),
		summaryNode("down", "64", "64Gi", nil, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }),
	}
	pods := []*corev1.Pod{summaryPod("a", "3"), summaryPod("b", "1"), summaryPod("d", "2")}
	s := ComputeSummary(nodes, pods, time.Unix(100, 0))
	gi := int64(8 << 30)
	want := api.NodeSummary{At: metav1.NewTime(time.Unix(100, 0)),
		Resources: []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods},
		Classes: []api.NodeClass{
			// b (3 CPU, 8Gi free) dominates a (1 CPU); c (2 CPU, 16Gi) is not dominated.
			{Nodes: 3, Free: [][]int64{{3000, gi, 109}, {2000, 2 * gi, 110}}},
			{Nodes: 1, Taints: []corev1.Taint{taint}, Free: [][]int64{{8000, gi, 110}}},
			{Nodes: 1, Labels: ssd, Free: [][]int64{{6000, gi, 109}}},
		}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	back, err := api.ParseNodeSummary(s.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.Classes, back.Classes); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	req, ok := s.Vector(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3"), corev1.ResourceMemory: resource.MustParse("1Gi")})
	if !ok || !s.Classes[0].Fits(req) || s.Classes[0].Fits([]int64{3001, 0, 0}) {
		t.Errorf("fits: %v %v", req, ok)
	}
	if _, ok := s.Vector(corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}); ok {
		t.Error("a resource no node offers fits")
	}
}

func TestFrontierMergesBeyondTheLimit(t *testing.T) {
	var vs [][]int64
	for i := range 100 {
		vs = append(vs, []int64{int64(i), int64(100 - i)}) // no vector dominates another
	}
	got := frontier(vs, 10)
	if len(got) != 10 {
		t.Fatalf("%d vectors, want 10", len(got))
	}
	// Every original vector is at most one merged vector: nothing that fits is refused.
	for _, v := range vs {
		if !(api.NodeClass{Free: got}).Fits(v) {
			t.Errorf("%v fits no merged vector", v)
		}
	}
}

// A member of 5,000 nodes: the summary's size, and the time to test one pod against it.
func TestSummaryOfAThousandsNodeMember(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 0))
	types := []struct{ cpu, mem string }{{"4", "16Gi"}, {"8", "32Gi"}, {"16", "64Gi"}, {"32", "128Gi"}, {"64", "256Gi"}}
	var nodes []*corev1.Node
	var pods []*corev1.Pod
	for i := range 5000 {
		ty := types[i%len(types)]
		name := fmt.Sprintf("node-%04d", i)
		nodes = append(nodes, summaryNode(name, ty.cpu, ty.mem, map[string]string{
			"topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", (i/7)%10), "node.kubernetes.io/instance-type": fmt.Sprintf("type-%d", i%len(types)),
			"example.com/node-id": fmt.Sprintf("id-%d", i), // unique per node: must be ignored
		}))
		for range rng.IntN(8) {
			pods = append(pods, summaryPod(name, fmt.Sprintf("%dm", 100+rng.IntN(1900))))
		}
	}
	start := time.Now()
	s := ComputeSummary(nodes, pods, time.Now())
	took := time.Since(start)
	size := len(s.Encode())
	t.Logf("5,000 nodes: %d classes, %d bytes, computed in %s", len(s.Classes), size, took)
	if len(s.Classes) > api.MaxSummaryClasses || size > 128<<10 {
		t.Errorf("%d classes, %d bytes: want at most %d classes and 128 KiB", len(s.Classes), size, api.MaxSummaryClasses)
	}
	if len(s.IgnoredLabels) != 1 || s.IgnoredLabels[0] != "example.com/node-id" {
		t.Errorf("ignored labels %v, want the per-node id only", s.IgnoredLabels)
	}
	req, _ := s.Vector(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("60"), corev1.ResourcePods: resource.MustParse("1")})
	start = time.Now()
	const tries = 1000
	for range tries {
		for _, c := range s.Classes {
			if c.Fits(req) {
				break
			}
		}
	}
	t.Logf("fit test of one pod against every class: %s", time.Since(start)/tries)
}
