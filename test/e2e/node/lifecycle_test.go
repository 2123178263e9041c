package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

const lingerFinalizer = "e2e.tether.io/linger"

// runOnM1 creates a host pod pinned to m1 and waits until it runs there.
func runOnM1(t *testing.T, ns, name string, opts ...podSpecOpt) (host, member *corev1.Pod) {
	t.Helper()
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: offloadedSpec(append([]podSpecOpt{onMember("m1")}, opts...)...),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return env.RunningIn(t, ns, name, "m1")
}

// linger puts a finalizer on a member pod, so that it stays Terminating until release.
func linger(t *testing.T, ns, name string) (release func()) {
	t.Helper()
	pods := env.Member(t, "m1").Client.CoreV1().Pods(ns)
	patch := fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, lingerFinalizer)
	if _, err := pods.Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		if _, err := pods.Patch(context.WithoutCancel(t.Context()), name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`),
			metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("remove the finalizer of member pod %s: %v", name, err)
		}
	}
	t.Cleanup(release)
	return release
}

// The host pod goes only once its member pod is gone: a member pod that takes longer than the grace period keeps
// its host pod Terminating, so that no replacement runs beside it.
func TestHostPodWaitsForItsMemberPod(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	runOnM1(t, ns, "slow")
	release := linger(t, ns, "slow")
	if err := env.Host.Client.CoreV1().Pods(ns).Delete(t.Context(), "slow", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](2)}); err != nil {
		t.Fatal(err)
	}
	// The host pod's deletionTimestamp is when its grace period ends: watch it stay well past that.
	var end time.Time
	framework.Eventually(t, timeout, "host pod still Terminating 10 s past its grace period", func(ctx context.Context) error {
		p, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, "slow", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("host pod gone while its member pod lingers: %v", err)
		}
		if p.DeletionTimestamp == nil {
			return fmt.Errorf("not deleting yet")
		}
		end = p.DeletionTimestamp.Add(10 * time.Second)
		if time.Now().Before(end) {
			return fmt.Errorf("%s to go", time.Until(end).Round(time.Second))
		}
		return nil
	})
	release()
	framework.Eventually(t, timeout, "host pod gone once its member pod is", func(ctx context.Context) error {
		_, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, "slow", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
}

// A host pod force-deleted and created again under the same name (what a StatefulSet does with web-0) runs as
// soon as the copy of its predecessor is gone, without waiting for a resync.
func TestSameNameRecreation(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	_, old := runOnM1(t, ns, "web-0")
	release := linger(t, ns, "web-0")
	hostPods := env.Host.Client.CoreV1().Pods(ns)
	if err := hostPods.Delete(t.Context(), "web-0", *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "old host pod gone", func(ctx context.Context) error {
		if _, err := hostPods.Get(ctx, "web-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	fresh, err := hostPods.Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0"}, Spec: offloadedSpec(onMember("m1"))}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m1 := env.Member(t, "m1").Client.CoreV1().Pods(ns)
	framework.Eventually(t, timeout, "the old copy Terminating, the new host pod waiting", func(ctx context.Context) error {
		mp, err := m1.Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mp.UID != old.UID || mp.DeletionTimestamp == nil {
			return fmt.Errorf("member pod %s, deleting %v", mp.UID, mp.DeletionTimestamp != nil)
		}
		return nil
	})
	release()
	released := time.Now()
	framework.Eventually(t, timeout, "new host pod Running on its own copy", func(ctx context.Context) error {
		h, err := hostPods.Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		mp, err := m1.Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h.Status.Phase != corev1.PodRunning || mp.Annotations[api.AnnotationHostUID] != string(fresh.UID) {
			return fmt.Errorf("host %s, member copy of %s", h.Status.Phase, mp.Annotations[api.AnnotationHostUID])
		}
		return nil
	})
	if took := time.Since(released); took > 10*time.Second {
		t.Errorf("the new pod ran %s after the old copy went, want ≤ 10 s", took.Round(100*time.Millisecond))
	}
}

// A create that is retried (here: a Secret that appears late) is no failure, also for restartPolicy: Never.
func TestNeverPodWaitsForALateSecret(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	hostPods := env.Host.Client.CoreV1().Pods(ns)
	if _, err := hostPods.Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "once"}, Spec: offloadedSpec(onMember("m1"),
		func(s *corev1.PodSpec) {
			s.RestartPolicy = corev1.RestartPolicyNever
			s.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "late"}}}}
		})}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	waitEvent(t, ns, "once", "MissingDependency", "secret/late")
	// The Secret comes 20 s late; until then the pod is Pending with the failed create's reason, never Failed.
	framework.Eventually(t, timeout, "20 s of retried creates written as Pending", func(ctx context.Context) error {
		p, err := hostPods.Get(ctx, "once", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("a restartPolicy: Never pod marked Failed for a retried create: %s", p.Status.Message)
		}
		if p.Status.Reason != "ProviderFailed" {
			return fmt.Errorf("phase %s, reason %q", p.Status.Phase, p.Status.Reason)
		}
		if time.Since(created) < 20*time.Second {
			return fmt.Errorf("%s of 20 s", time.Since(created).Round(time.Second))
		}
		return nil
	})
	if _, err := env.Host.Client.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late"},
		Data: map[string][]byte{"k": []byte("v")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.RunningIn(t, ns, "once", "m1")
}

// soak is how long TestNoUsableNodesIsNoOutage holds the cordon, and the not-ready/unreachable toleration of its
// running pod: 30 s against a toleration of 10 s by default, or TETHER_E2E_SOAK (say 6m) against the default 300 s.
func soak(t *testing.T) (hold time.Duration, tolerations []corev1.Toleration) {
	if v := os.Getenv("TETHER_E2E_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TETHER_E2E_SOAK=%s: %v", v, err)
		}
		return d, nil
	}
	var ts []corev1.Toleration
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		ts = append(ts, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](10)})
	}
	return 30 * time.Second, ts
}

// A member whose nodes are all cordoned is no outage: its virtual node stays Ready (nothing running is evicted,
// however long it lasts) and takes no new pods until a node is usable again.
func TestNoUsableNodesIsNoOutage(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m2 := env.Member(t, "m2")
	hold, tolerations := soak(t)
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "running"},
		Spec: offloadedSpec(onMember("m2"), func(s *corev1.PodSpec) { s.Tolerations = append(s.Tolerations, tolerations...) })}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.RunningIn(t, ns, "running", "m2")
	nodes, err := m2.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cordon := func(ctx context.Context, on bool) {
		for _, n := range nodes.Items {
			patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%v}}`, on)
			if _, err := m2.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Errorf("cordon %s=%v: %v", n.Name, on, err)
			}
		}
	}
	cordon(ctx, true)
	t.Cleanup(func() { cordon(context.WithoutCancel(ctx), false) })
	node := api.NodeName(api.DefaultNodePrefix, "m2")
	tainted := func(n *corev1.Node) bool {
		for _, tt := range n.Spec.Taints {
			if tt.Key == api.TaintNoUsableNodes && tt.Effect == corev1.TaintEffectNoSchedule {
				return true
			}
		}
		return false
	}
	framework.Eventually(t, timeout, "tether-m2 Ready, NoUsableNodes, tainted", func(ctx context.Context) error {
		n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && (c.Status != corev1.ConditionTrue || c.Reason != api.ReasonNoUsableNodes) {
				return fmt.Errorf("Ready=%s (%s)", c.Status, c.Reason)
			}
		}
		if !tainted(n) {
			return fmt.Errorf("taints %v", n.Spec.Taints)
		}
		return nil
	})
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "new"},
		Spec: offloadedSpec(onMember("m2"))}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The scheduler names no taint keys ("had untolerated taint(s)"); the only one the pod does not tolerate on
	// tether-m2 is Tether's, checked above.
	waitEvent(t, ns, "new", "FailedScheduling", "untolerated taint")
	// Longer than the running pod tolerates a NotReady node: the node stays Ready, gains no NoExecute taint, and
	// the pod runs on; the new one waits.
	end := time.Now().Add(hold)
	framework.Eventually(t, hold+timeout, fmt.Sprintf("%s cordoned with the running pod Running", hold), func(ctx context.Context) error {
		n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				t.Fatalf("tether-m2 Ready=%s (%s): %s", c.Status, c.Reason, c.Message)
			}
		}
		for _, tt := range n.Spec.Taints {
			if tt.Effect == corev1.TaintEffectNoExecute {
				t.Fatalf("tether-m2 tainted %s:%s", tt.Key, tt.Effect)
			}
		}
		pods, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			switch {
			case p.Name == "running" && (p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil):
				t.Fatalf("the running pod: phase %s, deleting %v", p.Status.Phase, p.DeletionTimestamp != nil)
			case p.Name == "new" && p.Spec.NodeName != "":
				t.Fatalf("the new pod was bound to %s", p.Spec.NodeName)
			}
		}
		if left := time.Until(end); left > 0 {
			return fmt.Errorf("%s to go", left.Round(time.Second))
		}
		return nil
	})
	cordon(ctx, false)
	framework.Eventually(t, timeout, "taint gone", func(ctx context.Context) error {
		n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if tainted(n) {
			return fmt.Errorf("still tainted")
		}
		return nil
	})
	env.RunningIn(t, ns, "new", "m2")
}

// A StatefulSet whose pods are deleted one by one (each comes back under its name) ends with exactly one member
// pod per host pod, each the copy of the host pod that has its name now.
func TestStatefulSetPodsDeletedOneByOne(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	labels := map[string]string{"app": "web"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template:            corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: offloadedSpec(onMember("m1"))},
		},
	}
	if _, err := env.Host.Client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		env.RunningIn(t, ns, fmt.Sprintf("web-%d", i), "m1")
	}
	for i := range 3 {
		name := fmt.Sprintf("web-%d", i)
		before, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Host.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, timeout, name+" back as a new pod, Running on its own copy", func(ctx context.Context) error {
			h, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if h.UID == before.UID || h.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("uid %s (before %s), %s", h.UID, before.UID, h.Status.Phase)
			}
			mp, err := env.Member(t, "m1").Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if mp.Annotations[api.AnnotationHostUID] != string(h.UID) || mp.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("member pod is the copy of %s, %s", mp.Annotations[api.AnnotationHostUID], mp.Status.Phase)
			}
			return nil
		})
	}
	framework.Eventually(t, timeout, "exactly 3 member pods, each the copy of its host pod", func(ctx context.Context) error {
		mps, err := env.Member(t, "m1").Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(mps.Items) != 3 {
			return fmt.Errorf("%d member pods", len(mps.Items))
		}
		for _, mp := range mps.Items {
			h, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, mp.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if mp.Annotations[api.AnnotationHostUID] != string(h.UID) || mp.DeletionTimestamp != nil {
				return fmt.Errorf("member pod %s: copy of %s, deleting %v", mp.Name, mp.Annotations[api.AnnotationHostUID], mp.DeletionTimestamp != nil)
			}
		}
		return nil
	})
}

// tether-node killed again and again while pods come and go: in the end, exactly one member pod per live host pod
// and none for a deleted one.
func TestKilledDuringChurnConverges(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	// Small pods, so that the peak fits the two members beside what other tests left behind. The peak is 500
	// (TETHER_E2E_CHURN_PEAK changes it); the check re-reads the host pods at every look, and a failure says what
	// the host holds under an orphan's name.
	small := func(s *corev1.PodSpec) {
		s.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("8Mi")}
	}
	peak := 500
	if v := os.Getenv("TETHER_E2E_CHURN_PEAK"); v != "" {
		var err error
		if peak, err = strconv.Atoi(v); err != nil || peak < 10 {
			t.Fatalf("TETHER_E2E_CHURN_PEAK=%q: want a number of pods ≥ 10", v)
		}
	}
	var sizes []int32
	for _, tenth := range []int{3, 9, 1, 10, 4, 8, 2, 7, 5, 6} {
		sizes = append(sizes, int32(peak*tenth/10))
	}
	createDeployment(t, deployment(ns, "churn", sizes[3], small))
	deployments := env.Host.Client.AppsV1().Deployments(ns)
	rng := rand.New(rand.NewPCG(1, 2)) // the same moments on every run
	for _, n := range sizes {
		patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
		if _, err := deployments.Patch(ctx, "churn", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		// Somewhere in the middle of the creates and deletes that follow.
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		env.StopProcess(t, sandbox.TetherNode, syscall.SIGKILL)
		env.StartProcess(t, sandbox.TetherNode)
	}
	final := int(sizes[len(sizes)-1])
	waitRunning(t, ns, "churn", final)
	waitOneCopyPerLivePod(t, ns, "churn", final, 3*timeout)
}

// A member apiserver that hangs for longer than the pod controller retries (cut short here by flags) while host
// pods are deleted and created: once it answers again, the deleted pods' copies are gone, the new pods run, and
// every live host pod has exactly one copy.
func TestMemberFrozenPastRetries(t *testing.T) {
	env.RestartProcessWith(t, sandbox.TetherNode, "--pod-sync-retries", "2", "--member-request-timeout", "2s", "--repair-interval", "5s")
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	hostPods := env.Host.Client.CoreV1().Pods(ns)
	node := api.NodeName(api.DefaultNodePrefix, "m2")
	create := func(name string, opts ...podSpecOpt) {
		t.Helper()
		if _, err := hostPods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: offloadedSpec(opts...)}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"keep-0", "keep-1", "gone-0", "gone-1"} {
		create(name, onMember("m2"))
	}
	for _, name := range []string{"keep-0", "keep-1", "gone-0", "gone-1"} {
		env.RunningIn(t, ns, name, "m2")
	}

	if err := env.State.PauseAPIServer("m2"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := env.State.ResumeAPIServer("m2"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume)
	for _, name := range []string{"gone-0", "gone-1"} {
		if err := hostPods.Delete(ctx, name, *metav1.NewDeleteOptions(3)); err != nil {
			t.Fatal(err)
		}
	}
	// Bound straight to the node: the scheduler would keep them off a node that is not Ready.
	for _, name := range []string{"new-0", "new-1"} {
		create(name, func(s *corev1.PodSpec) { s.NodeSelector = nil; s.NodeName = node })
	}
	// The pod controller gives up on both kinds of work, and the deleted pods' grace period ends meanwhile.
	for _, key := range []string{ns + "/gone-0", ns + "/new-0"} {
		framework.Eventually(t, timeout, "the pod controller gives up on "+key, func(context.Context) error {
			ok, err := env.ProcessLogHas(sandbox.TetherNode, key, "given up after 2 tries")
			if err != nil || ok {
				return err
			}
			return fmt.Errorf("not yet")
		})
	}
	framework.Eventually(t, timeout, "past the grace period, the deleted host pods still there", func(ctx context.Context) error {
		for _, name := range []string{"gone-0", "gone-1"} {
			p, err := hostPods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("host pod %s went while its member pod may still run: %v", name, err)
			}
			if p.DeletionTimestamp == nil || time.Now().Before(p.DeletionTimestamp.Add(2*time.Second)) {
				return fmt.Errorf("%s: grace period not over", name)
			}
		}
		return nil
	})
	resume()

	framework.Eventually(t, 2*timeout, "deleted pods gone from host and member", func(ctx context.Context) error {
		for _, name := range []string{"gone-0", "gone-1"} {
			if _, err := hostPods.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("host pod %s: %v", name, err)
			}
			if _, err := env.Member(t, "m2").Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("member pod %s: %v", name, err)
			}
		}
		return nil
	})
	var live []corev1.Pod
	for _, name := range []string{"keep-0", "keep-1", "new-0", "new-1"} {
		h, _ := env.RunningIn(t, ns, name, "m2")
		live = append(live, *h)
	}
	waitOneCopyEach(t, ns, live, timeout)
}

// Status writes carry the status alone: labels written on the host pod while statuses are pushed all stay.
func TestLabelsSurviveStatusPushes(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	host, _ := runOnM1(t, ns, "steady")
	hostPods := env.Host.Client.CoreV1().Pods(ns)
	memberPods := env.Member(t, "m1").Client.CoreV1().Pods(ns)
	const steps = 10
	for i := range steps {
		// A new member status (a condition of the test's), then at once a label on the host pod: the label lands
		// between the push of that status and its write.
		cond := fmt.Appendf(nil, `{"status":{"conditions":[{"type":"e2e.tether.io/Step","status":"True","message":"%d"}]}}`, i)
		if _, err := memberPods.Patch(ctx, host.Name, types.StrategicMergePatchType, cond, metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		label := fmt.Appendf(nil, `{"metadata":{"labels":{"step-%d":"yes"}}}`, i)
		if _, err := hostPods.Patch(ctx, host.Name, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	framework.Eventually(t, timeout, "the last member status in the host, every label still there", func(ctx context.Context) error {
		p, err := hostPods.Get(ctx, host.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range steps {
			if p.Labels[fmt.Sprintf("step-%d", i)] != "yes" {
				t.Fatalf("label step-%d lost; labels %v", i, p.Labels)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "e2e.tether.io/Step" && c.Message == fmt.Sprint(steps-1) {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", p.Status.Conditions)
	})
}
