package app

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tetherkube/tether/api"
)

func TestStatus(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ready := func(member string, status corev1.ConditionStatus, reason string) *corev1.Node {
		n := virtualNode(member)
		n.Status = corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: reason}},
			Allocatable: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("330"), corev1.ResourceCPU: resource.MustParse("11500m"),
				corev1.ResourceMemory: resource.MustParse("48Gi")},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.36.3"},
		}
		return n
	}
	pod := func(name, node string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}, Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: phase}}
	}
	lease := func(node string, ago time.Duration) *coordinationv1.Lease {
		renew := metav1.NewMicroTime(now.Add(-ago))
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{RenewTime: &renew}}
	}
	unreachable := ready("m3", corev1.ConditionFalse, api.ReasonMemberUnreachable)
	unreachable.Status.Allocatable = nil
	host := hostCluster([]runtime.Object{
		memberSecret(t, api.MemberSecretName("m1"), "m1", epM1, true),
		memberSecret(t, api.MemberSecretName("m2"), "m2", epM2, true),
		ready("m1", corev1.ConditionTrue, api.ReasonMemberReady), lease("tether-m1", 3*time.Second),
		pod("a", "tether-m1", corev1.PodRunning), pod("b", "tether-m1", corev1.PodPending), pod("c", "tether-m1", corev1.PodSucceeded),
		pod("d", "real-node", corev1.PodRunning),
		unreachable, lease("tether-m3", 5*time.Minute),
		// Not a virtual node of Tether's.
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "real-node"}},
	}...)
	rows, err := memberStatus(t.Context(), host, api.DefaultNamespace, api.DefaultNodePrefix)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printStatus(&out, rows, now, false); err != nil {
		t.Fatal(err)
	}
	want := `MEMBER   NODE        READY    REASON              PODS       CPU      MEMORY   VERSION   HEARTBEAT   SECRET
m1       tether-m1   True     MemberReady         2/330      11500m   48Gi     v1.36.3   3s ago      member-m1
m2       <none>      <none>   <none>              <none>     <none>   <none>   <none>    <none>      member-m2
m3       tether-m3   False    MemberUnreachable   0/<none>   <none>   <none>   v1.36.3   5m ago      <none>
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	out.Reset()
	if err := printStatus(&out, rows[:1], now, true); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("m1   tether-m1   True   MemberReady   2/330   11500m   48Gi   v1.36.3   3s ago   member-m1\n", out.String()); diff != "" {
		t.Errorf("--no-headers (-want +got):\n%s", diff)
	}
}

func TestQuantity(t *testing.T) {
	for in, want := range map[string]string{"48Gi": "48Gi", "49283072Ki": "47Gi", "512Mi": "512Mi", "3Gi": "3072Mi", "1000": "1k"} {
		q := resource.MustParse(in)
		if got := quantity(&q, true); got != want {
			t.Errorf("memory %s: %s, want %s", in, got, want)
		}
	}
	if got := quantity(nil, false); got != "<none>" {
		t.Errorf("nil: %s", got)
	}
}
