package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

const timeout = 2 * time.Minute

func node(member string) string { return api.NodeName(api.DefaultNodePrefix, member) }

// Issue 15, test 1: m1 has 2+2+2 CPU free, m2 has 4 on one node: a 3-CPU pod is bound to tether-m2, every time.
func TestFragmentedMemberIsRefused(t *testing.T) {
	free(t, map[string]map[string]string{
		"m1": {"m1-node-0": "2", "m1-node-1": "2", "m1-node-2": "2"},
		"m2": {"m2-node-0": "4", "m2-node-1": "0", "m2-node-2": "0"},
	})
	ns := env.Host.Namespace(t, nil)
	for i := range 20 {
		p := offloaded(fmt.Sprintf("three-%d", i), "3")
		if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := boundTo(t, ns, p.Name); got != node("m2") {
			t.Fatalf("run %d: bound to %s, want %s", i, got, node("m2"))
		}
		deleteAndWait(t, ns, p.Name)
	}
}

// Issue 15, tests 2 and 3: through tether-webhook --scheduler-name, pods whose parked disktype=ssd only m2 can honour
// land on m2; with m2's ssd node cordoned and m1's tainted node labelled ssd, they wait, naming each virtual node's
// reason, until they tolerate that taint, and then go to m1.
func TestParkedSelectorAndTolerations(t *testing.T) {
	env.RestartProcessWith(t, sandbox.TetherWebhook, "--scheduler-name", api.SchedulerName)
	ns := env.Host.Namespace(t, map[string]string{api.LabelOffload: api.OffloadEnabled})
	// Plain pods: the webhook adds the tolerations and the schedulerName, and parks the selector.
	ssd := func(s *corev1.PodSpec) {
		s.SchedulerName, s.Tolerations = "", nil
		s.NodeSelector = map[string]string{"disktype": "ssd"}
	}
	createDeployment(t, ns, "ssd", 5, "10m", ssd)
	framework.Eventually(t, timeout, "5 ssd pods bound to tether-m2", func(ctx context.Context) error {
		return boundCount(ctx, ns, "ssd", map[string]int{node("m2"): 5})
	})
	ps := hostPods(t, ns, "ssd")
	if ps[0].Spec.SchedulerName != api.SchedulerName {
		t.Fatalf("schedulerName %q: the webhook did not set it", ps[0].Spec.SchedulerName)
	}

	// m1's tainted node (dedicated=special:NoSchedule) gets disktype=ssd; m2's ssd node is cordoned.
	m1, m2 := env.Member(t, "m1"), env.Member(t, "m2")
	patchNode(t, m1, "m1-node-1", `{"metadata":{"labels":{"disktype":"ssd"}}}`, `{"metadata":{"labels":{"disktype":null}}}`)
	patchNode(t, m2, "m2-node-0", `{"spec":{"unschedulable":true}}`, `{"spec":{"unschedulable":false}}`)
	waitSummary(t, "m1 shows a tainted ssd node, m2 none", func(sums map[string]api.NodeSummary) error {
		if !hasClass(sums["m1"], "ssd", true) {
			return fmt.Errorf("tether-m1: no tainted ssd class yet")
		}
		if hasClass(sums["m2"], "ssd", false) || hasClass(sums["m2"], "ssd", true) {
			return fmt.Errorf("tether-m2 still shows an ssd node")
		}
		return nil
	})
	createDeployment(t, ns, "waits", 1, "10m", ssd)
	msg := failedScheduling(t, ns, "waits")
	for _, want := range []string{"tether-m1: no node with disktype=ssd whose taints the pod tolerates", "tether-m2: no node with disktype=ssd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("FailedScheduling %q lacks %q", msg, want)
		}
	}
	createDeployment(t, ns, "tolerates", 2, "10m", ssd, func(s *corev1.PodSpec) {
		s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "special", Effect: corev1.TaintEffectNoSchedule})
	})
	framework.Eventually(t, timeout, "2 tolerating ssd pods bound to tether-m1", func(ctx context.Context) error {
		return boundCount(ctx, ns, "tolerates", map[string]int{node("m1"): 2})
	})
	if p := hostPods(t, ns, "waits"); p[0].Spec.NodeName != "" {
		t.Errorf("the pod without the toleration was bound to %s", p[0].Spec.NodeName)
	}
}

// Issue 15, test 3: no member has a node with 20 CPU free (nodes of 16): Pending, with each virtual node's reason.
func TestNoMemberFitsSaysWhy(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	p := offloaded("twenty", "20")
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	msg := failedSchedulingOf(t, ns, p.Name)
	for _, m := range []string{"m1", "m2"} {
		if want := node(m) + ": no node with 20 CPU free"; !strings.Contains(msg, want) {
			t.Errorf("FailedScheduling %q lacks %q", msg, want)
		}
	}
}

// Issue 15, test 4: 200 unpinned pods: each member gets between 40 % and 60 %.
func TestBurstSpreadsAcrossMembers(t *testing.T) {
	waitSummary(t, "both members with their whole nodes free", func(sums map[string]api.NodeSummary) error {
		for m, s := range sums {
			whole := resource.MustParse(sandbox.DefaultNodeCPU)
			if got, want := largestCPU(s), whole.MilliValue(); got != want {
				return fmt.Errorf("%s: largest free CPU %dm, want %dm", node(m), got, want)
			}
		}
		return nil
	})
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, ns, "burst", 200, "10m")
	var per map[string]int
	framework.Eventually(t, 3*time.Minute, "200 pods bound", func(ctx context.Context) error {
		var err error
		per, err = boundPerNode(ctx, ns, "burst")
		if err != nil {
			return err
		}
		if n := per[node("m1")] + per[node("m2")]; n != 200 {
			return fmt.Errorf("%d of 200 bound: %v", n, per)
		}
		return nil
	})
	t.Logf("bound: %v", per)
	for _, m := range []string{"m1", "m2"} {
		if n := per[node(m)]; n < 80 || n > 120 {
			t.Errorf("%s got %d of 200 pods, want 80 to 120", node(m), n)
		}
	}
}

// Issue 15, test 5: a real host node schedules as before: a plain pod lands there, and so does an offloadable pod
// that no member can fit.
func TestRealNodesStillSchedule(t *testing.T) {
	real := realNode(t)
	ns := env.Host.Namespace(t, nil)
	tolerateReal := corev1.Toleration{Key: real.Spec.Taints[0].Key, Operator: corev1.TolerationOpExists}
	plain := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec: corev1.PodSpec{SchedulerName: api.SchedulerName, Tolerations: []corev1.Toleration{tolerateReal},
			Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}},
	}
	big := offloaded("big", "100")
	big.Spec.Tolerations = append(big.Spec.Tolerations, tolerateReal)
	for _, p := range []*corev1.Pod{plain, big} {
		if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := boundTo(t, ns, p.Name); got != real.Name {
			t.Errorf("pod %s bound to %s, want the real node %s", p.Name, got, real.Name)
		}
	}
}

// offloaded is a bare pod for tether-scheduler that tolerates virtual nodes and asks for cpu.
func offloaded(name, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{SchedulerName: api.SchedulerName, Tolerations: api.Tolerations(300),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
	}
}

// createDeployment creates a Deployment of replicas offloaded pods for tether-scheduler asking for cpu.
func createDeployment(t *testing.T, ns, name string, replicas int32, cpu string, opts ...func(*corev1.PodSpec)) {
	t.Helper()
	spec := offloaded(name, cpu).Spec
	for _, o := range opts {
		o(&spec)
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec}},
	}
	if _, err := env.Host.Client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func hostPods(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	var ps []corev1.Pod
	framework.Eventually(t, timeout, "pods of "+app, func(ctx context.Context) error {
		l, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		if ps = l.Items; len(ps) == 0 {
			return fmt.Errorf("no pod of %s yet", app)
		}
		return nil
	})
	return ps
}

func boundPerNode(ctx context.Context, ns, app string) (map[string]int, error) {
	l, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	per := map[string]int{}
	for _, p := range l.Items {
		if p.Spec.NodeName != "" {
			per[p.Spec.NodeName]++
		}
	}
	return per, nil
}

// boundCount is nil once the app's pods are bound exactly as want says (node → count).
func boundCount(ctx context.Context, ns, app string, want map[string]int) error {
	per, err := boundPerNode(ctx, ns, app)
	if err != nil {
		return err
	}
	for n, c := range want {
		if per[n] != c {
			return fmt.Errorf("bound %v, want %v", per, want)
		}
	}
	return nil
}

// boundTo waits until the pod is bound and returns its node.
func boundTo(t *testing.T, ns, name string) string {
	t.Helper()
	var nodeName string
	framework.Eventually(t, timeout, "pod "+name+" bound", func(ctx context.Context) error {
		p, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if nodeName = p.Spec.NodeName; nodeName == "" {
			return fmt.Errorf("not bound")
		}
		return nil
	})
	return nodeName
}

func deleteAndWait(t *testing.T, ns, name string) {
	t.Helper()
	if err := env.Host.Client.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "pod "+name+" gone", func(ctx context.Context) error {
		_, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// failedScheduling is the FailedScheduling message of the app's (one) pod.
func failedScheduling(t *testing.T, ns, app string) string {
	t.Helper()
	return failedSchedulingOf(t, ns, hostPods(t, ns, app)[0].Name)
}

func failedSchedulingOf(t *testing.T, ns, pod string) string {
	t.Helper()
	var msg string
	framework.Eventually(t, timeout, "FailedScheduling of "+pod, func(ctx context.Context) error {
		evs, err := env.Host.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",reason=FailedScheduling"})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return fmt.Errorf("no FailedScheduling event yet")
		}
		msg = evs.Items[len(evs.Items)-1].Message
		return nil
	})
	return msg
}

// free leaves, on each member node named, that much CPU free (a member pod of the member's own takes the rest),
// until the test ends, and waits until every virtual node's summary shows it.
func free(t *testing.T, cpu map[string]map[string]string) {
	t.Helper()
	env.LeaveFree(t, cpu)
	waitSummary(t, fmt.Sprintf("free CPU %v", cpu), func(sums map[string]api.NodeSummary) error {
		for member, nodes := range cpu {
			var most int64
			for _, left := range nodes {
				q := resource.MustParse(left)
				most = max(most, q.MilliValue())
			}
			if got := largestCPU(sums[member]); got != most {
				return fmt.Errorf("%s: largest free CPU %dm, want %dm", node(member), got, most)
			}
		}
		return nil
	})
}

// waitSummary waits until cond accepts the members' node summaries (by member).
func waitSummary(t *testing.T, what string, cond func(map[string]api.NodeSummary) error) {
	t.Helper()
	framework.Eventually(t, timeout, what, func(ctx context.Context) error {
		sums := map[string]api.NodeSummary{}
		for _, m := range env.Members {
			n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node(m.Name), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if sums[m.Name], err = api.ParseNodeSummary(n.Annotations[api.AnnotationNodeSummary]); err != nil {
				return err
			}
		}
		return cond(sums)
	})
}

func largestCPU(s api.NodeSummary) int64 {
	var most int64
	for _, c := range s.Classes {
		for _, f := range c.Free {
			most = max(most, f[0])
		}
	}
	return most
}

// hasClass reports whether the summary has a class of nodes with disktype=value, tainted or not.
func hasClass(s api.NodeSummary, value string, tainted bool) bool {
	for _, c := range s.Classes {
		if c.Labels["disktype"] == value && (len(c.Taints) > 0) == tainted {
			return true
		}
	}
	return false
}

// patchNode merge-patches a member node, and undoes it with undo when the test ends.
func patchNode(t *testing.T, m *framework.Cluster, name, patch, undo string) {
	t.Helper()
	if _, err := m.Client.CoreV1().Nodes().Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := m.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(undo), metav1.PatchOptions{}); err != nil {
			t.Errorf("undo %s on %s: %v", patch, name, err)
		}
	})
}

// realNode is a Ready host node of 200 CPU, tainted so that nothing but the test's pods goes there.
func realNode(t *testing.T) *corev1.Node {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "e2e-real-node", Labels: map[string]string{corev1.LabelHostname: "e2e-real-node"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "example.com/e2e-real-node", Effect: corev1.TaintEffectNoSchedule}}}}
	if _, err := env.Host.Client.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = env.Host.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
	})
	// The host's controllers write the new node too (its not-ready taint): retried on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := env.Host.Client.CoreV1().Nodes().Get(t.Context(), n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "E2E",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		cur.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("10")}
		cur.Status.Capacity = cur.Status.Allocatable
		_, err = env.Host.Client.CoreV1().Nodes().UpdateStatus(t.Context(), cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
