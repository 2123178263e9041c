package memberfit

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkCycle is one scheduling cycle's work of MemberFit for a plain offloaded pod on two virtual nodes of 500
// pods each (100 in flight): SignPod, PreFilter, Filter and Score on both.
func BenchmarkCycle(b *testing.B) {
	pl, _ := New(b.Context(), nil, nil)
	p := pl.(*Plugin)
	at := time.Now().Truncate(time.Second)
	before, after := at.Add(-time.Minute), at.Add(2*time.Second)
	var nodes []*framework.NodeInfo
	for _, m := range []string{"m1", "m2"} {
		ni := framework.NewNodeInfo()
		ni.SetNode(virtualNode(m, at, memberNode(m+"-a", 1000, nil), memberNode(m+"-b", 1000, nil)))
		for i := range 500 {
			when := &before
			if i%5 == 0 {
				when = &after
			}
			ni.AddPod(bound(fmt.Sprintf("%s-%d", m, i), "100m", when))
		}
		nodes = append(nodes, ni)
	}
	b.ReportAllocs()
	for b.Loop() {
		pod := makePod(withCPU("100m"))
		state := framework.NewCycleState()
		p.SignPod(b.Context(), pod)
		p.PreFilter(b.Context(), state, pod, nil)
		for _, ni := range nodes {
			if st := p.Filter(b.Context(), state, pod, ni); !st.IsSuccess() {
				b.Fatal(st)
			}
			p.Score(b.Context(), state, pod, ni)
		}
	}
}
