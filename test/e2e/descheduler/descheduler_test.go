package descheduler_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/descheduler/plugins/memberunschedulable"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

// Issue 14, test 1: m1 has nodes with 2 CPU free each, m2 one node with 4 free; a pod asking 3 CPU bound to
// tether-m1 stays unschedulable there, is evicted, and its replacement runs on m2 (and avoids m1).
func TestFragmentsMoveToAnotherMember(t *testing.T) {
	ns := offloadNamespace(t)
	fragmented(t)
	release := pinnedTo(t, "m1", "m2")
	deployment(t, ns, "frag", "3")
	stuck := stuckIn(t, ns, "frag", "m1")
	since := unschedulable(stuck).LastTransitionTime.Time
	release()
	moved := runningElsewhere(t, ns, "frag", "m2", stuck.UID)
	took := time.Since(since)
	t.Logf("figure: %.1f s from unschedulable in m1 (%s) to Running on m2 (unschedulableFor %s, interval 5s)",
		took.Seconds(), since.Format(time.RFC3339), unschedulableFor)
	if !avoidsMember(moved, "m1") {
		t.Errorf("replacement %s does not avoid m1: affinity %v", moved.Name, moved.Spec.Affinity)
	}
	waitEvent(t, ns, stuck.Name, memberunschedulable.ReasonEvicted, "tether-m2 can take it")
	got, err := avoided(t.Context(), controllerUID(t, stuck))
	if err != nil || !slices.Equal(got, []string{"m1"}) {
		t.Errorf("avoid record for the ReplicaSet: %v (%v), want [m1]", got, err)
	}
	if v, err := metric(t, "tether_descheduler_member_unschedulable_total", `decision="evicted"`, `member="m1"`); err != nil || v == "0" {
		t.Errorf("evicted metric %q (%v)", v, err)
	}
}

// Issue 14, test 2: no node anywhere has 4 CPU free: the pod is not evicted, one event says why, and nothing
// churns (TETHER_E2E_CHURN_WINDOW, default 2m).
func TestNoMemberFitsNoChurn(t *testing.T) {
	window := 2 * time.Minute
	if s := os.Getenv("TETHER_E2E_CHURN_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		window = d
	}
	ns := offloadNamespace(t)
	free(t, map[string]map[string]string{
		"m1": {"m1-node-0": "3", "m1-node-1": "3", "m1-node-2": "3"},
		"m2": {"m2-node-0": "3", "m2-node-1": "3", "m2-node-2": "3"},
	}, map[string]string{"m1": "3", "m2": "3"})
	deployment(t, ns, "big", "4")
	var stuck *corev1.Pod
	framework.Eventually(t, timeout, "pod unschedulable in its member", func(ctx context.Context) error {
		ps, err := pods(ctx, ns, "big")
		if err != nil || len(ps) != 1 {
			return fmt.Errorf("%d pods: %v", len(ps), err)
		}
		if !strings.HasPrefix(ps[0].Spec.NodeName, api.DefaultNodePrefix) || unschedulable(&ps[0]) == nil {
			return fmt.Errorf("pod on %q, conditions %v", ps[0].Spec.NodeName, ps[0].Status.Conditions)
		}
		stuck = &ps[0]
		return nil
	})
	waitEvent(t, ns, stuck.Name, memberunschedulable.ReasonNoMemberFits, "no other member has a node with 4 CPU free")
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		holds(t, ns, "big", stuck.UID, 3)
	}
	evs, err := eventsAbout(t.Context(), ns, stuck.Name, memberunschedulable.ReasonNoMemberFits)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || (evs[0].Series != nil && evs[0].Series.Count > 1) || evs[0].Count > 1 {
		t.Errorf("%s events after %s: %d (%+v), want one", memberunschedulable.ReasonNoMemberFits, window, len(evs), evs)
	}
	t.Logf("event: %s", evs[0].Message)
}

// Issue 14, test 3: a PodDisruptionBudget with maxUnavailable 0 blocks the eviction.
func TestPDBBlocksEviction(t *testing.T) {
	ns := offloadNamespace(t)
	fragmented(t)
	if _, err := env.Host.Client.PolicyV1().PodDisruptionBudgets(ns).Create(t.Context(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	release := pinnedTo(t, "m1", "m2")
	deployment(t, ns, "guarded", "3")
	stuck := stuckIn(t, ns, "guarded", "m1")
	release()
	waitEvent(t, ns, stuck.Name, memberunschedulable.ReasonBlocked, "PodDisruptionBudget guarded allows no disruption")
	holds(t, ns, "guarded", stuck.UID, 3)
	if got, err := avoided(t.Context(), controllerUID(t, stuck)); err != nil || len(got) != 0 {
		t.Errorf("avoid record for a pod that stayed: %v (%v)", got, err)
	}
}

// Issue 14, test 3: --dry-run evicts nothing, writes no avoid record, and logs what it would do.
func TestDryRunEvictsNothing(t *testing.T) {
	env.RestartProcessWith(t, sandbox.TetherDescheduler, "--dry-run")
	if err := waitCycles(t.Context(), env, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	ns := offloadNamespace(t)
	fragmented(t)
	release := pinnedTo(t, "m1", "m2")
	deployment(t, ns, "dry", "3")
	stuck := stuckIn(t, ns, "dry", "m1")
	release()
	framework.Eventually(t, timeout, "the dry run's eviction in the log", func(context.Context) error {
		ok, err := env.ProcessLogHas(sandbox.TetherDescheduler, "Evicted pod in dry run mode", stuck.Name)
		if err != nil || !ok {
			return fmt.Errorf("not logged yet (%v)", err)
		}
		return nil
	})
	holds(t, ns, "dry", stuck.UID, 2)
	if got, err := avoided(t.Context(), controllerUID(t, stuck)); err != nil || len(got) != 0 {
		t.Errorf("a dry run wrote the avoid record: %v (%v)", got, err)
	}
	if evs, err := eventsAbout(t.Context(), ns, stuck.Name, memberunschedulable.ReasonEvicted); err != nil || len(evs) != 0 {
		t.Errorf("a dry run recorded %d %s events (%v)", len(evs), memberunschedulable.ReasonEvicted, err)
	}
}

// Issue 14, test 4: a pod Pending (even Unschedulable) on a host node that is not a virtual node is never touched.
func TestPodOnRealNodeUntouched(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	// Tainted so that the host scheduler puts nothing else there; the test's pod names it directly.
	real := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "e2e-real-node", Labels: map[string]string{corev1.LabelHostname: "e2e-real-node"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "example.com/e2e-real-node", Effect: corev1.TaintEffectNoSchedule}}}}
	n, err := env.Host.Client.CoreV1().Nodes().Create(t.Context(), real, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = env.Host.Client.CoreV1().Nodes().Delete(ctx, real.Name, metav1.DeleteOptions{})
	})
	// The host's controllers write the new node too (its not-ready taint): retried on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if n, err = env.Host.Client.CoreV1().Nodes().Get(t.Context(), real.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "E2E",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourcePods: *resourcePods(10)}
		n.Status.Capacity = n.Status.Allocatable
		_, err := env.Host.Client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	deployment(t, ns, "real", "100m", func(s *corev1.PodSpec) { s.NodeName = real.Name })
	var pod *corev1.Pod
	framework.Eventually(t, timeout, "the pod bound to the real node", func(ctx context.Context) error {
		ps, err := pods(ctx, ns, "real")
		if err != nil {
			return err
		}
		for i := range ps {
			if ps[i].Spec.NodeName == real.Name {
				pod = &ps[i]
			}
		}
		if pod == nil || len(ps) != 1 {
			return fmt.Errorf("%d pods, none alone on %s", len(ps), real.Name)
		}
		return nil
	})
	// What tether-node would bring from a member: unschedulable for long.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Phase = corev1.PodPending
		cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}}
		_, err = env.Host.Client.CoreV1().Pods(ns).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	holds(t, ns, "real", pod.UID, 3)
}

// Issue 14, test 5: after tether-descheduler (and tether-webhook) restart, new pods of the evicted pod's controller
// still avoid m1 during the cool-down, and may use m1 again after it.
func TestAvoidSurvivesRestart(t *testing.T) {
	ns := offloadNamespace(t)
	fragmented(t)
	release := pinnedTo(t, "m1", "m2")
	deployment(t, ns, "again", "3")
	stuck := stuckIn(t, ns, "again", "m1")
	release()
	moved := runningElsewhere(t, ns, "again", "m2", stuck.UID)
	evictedAt := time.Now()
	rs := controllerUID(t, stuck)

	env.StopProcess(t, sandbox.TetherDescheduler, syscall.SIGKILL)
	env.StartProcess(t, sandbox.TetherDescheduler)
	env.StopProcess(t, sandbox.TetherWebhook, syscall.SIGKILL)
	env.StartProcess(t, sandbox.TetherWebhook)
	if got, err := avoided(t.Context(), rs); err != nil || !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("after the restarts the avoid record holds %v (%v), want [m1]", got, err)
	}
	// A new pod of the same ReplicaSet during the cool-down.
	next := replace(t, ns, "again", moved)
	if !avoidsMember(next, "m1") {
		t.Errorf("during the cool-down the new pod %s does not avoid m1: %v", next.Name, next.Spec.Affinity)
	}
	// After it, the record is over and new pods may use m1 again.
	framework.Eventually(t, avoidFor+time.Minute, "the cool-down over", func(ctx context.Context) error {
		got, err := avoided(ctx, rs)
		if err != nil || len(got) > 0 {
			return fmt.Errorf("still avoided: %v (%v)", got, err)
		}
		return nil
	})
	t.Logf("cool-down over %.0f s after the eviction", time.Since(evictedAt).Seconds())
	last := replace(t, ns, "again", next)
	if avoidsMember(last, "m1") {
		t.Errorf("after the cool-down the new pod %s still avoids m1: %v", last.Name, last.Spec.Affinity)
	}
}

// replace deletes the pod of app and returns the one its ReplicaSet creates instead.
func replace(t *testing.T, ns, app string, old *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := env.Host.Client.CoreV1().Pods(ns).Delete(t.Context(), old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var next *corev1.Pod
	framework.Eventually(t, timeout, "a new pod of "+app, func(ctx context.Context) error {
		ps, err := pods(ctx, ns, app)
		if err != nil {
			return err
		}
		for i := range ps {
			if ps[i].UID != old.UID {
				next = &ps[i]
				return nil
			}
		}
		return fmt.Errorf("no new pod among %d", len(ps))
	})
	return next
}
