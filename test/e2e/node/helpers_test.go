package node_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/test/e2e/framework"
)

// timeout is generous: these tests check behaviour, the benchmark measures speed.
const timeout = 2 * time.Minute

var virtualNodeToleration = corev1.Toleration{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: api.TaintValue,
	Effect: corev1.TaintEffectNoSchedule}

type podSpecOpt func(*corev1.PodSpec)

// onMember pins a pod to one member's virtual node.
func onMember(name string) podSpecOpt {
	return func(s *corev1.PodSpec) {
		if s.NodeSelector == nil {
			s.NodeSelector = map[string]string{}
		}
		s.NodeSelector[api.LabelMember] = name
	}
}

// offloadedSpec is a pod spec that lands on a virtual node.
func offloadedSpec(opts ...podSpecOpt) corev1.PodSpec {
	s := corev1.PodSpec{
		NodeSelector: map[string]string{api.NodeTypeKey: api.NodeType},
		Tolerations:  []corev1.Toleration{virtualNodeToleration},
		Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}}},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func deployment(ns, name string, replicas int32, opts ...podSpecOpt) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: offloadedSpec(opts...)},
		},
	}
}

func createDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if _, err := env.Host.Client.AppsV1().Deployments(d.Namespace).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// hostPods lists the host pods of a Deployment named app.
func hostPods(ctx context.Context, ns, app string) ([]corev1.Pod, error) {
	l, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// memberPodOf finds the member pod of a host pod in whichever member its virtual node stands for.
func memberPodOf(ctx context.Context, host *corev1.Pod) (*corev1.Pod, *framework.Cluster, error) {
	for _, m := range env.Members {
		if host.Spec.NodeName != api.NodeName(api.DefaultNodePrefix, m.Name) {
			continue
		}
		p, err := m.Client.CoreV1().Pods(host.Namespace).Get(ctx, host.Name, metav1.GetOptions{})
		return p, m, err
	}
	return nil, nil, fmt.Errorf("pod %s is on %q, not a virtual node", host.Name, host.Spec.NodeName)
}

// waitRunning waits until the Deployment's n pods run in the host and in their members.
func waitRunning(t *testing.T, ns, app string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	framework.Eventually(t, timeout, fmt.Sprintf("%d pods of %s Running in host and members", n, app), func(ctx context.Context) error {
		var err error
		if pods, err = hostPods(ctx, ns, app); err != nil {
			return err
		}
		inMember := map[string]corev1.Pod{} // node/name → member pod
		for _, m := range env.Members {
			// Only members that hold some of these pods: another may be down on purpose.
			if !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.Spec.NodeName == api.NodeName(api.DefaultNodePrefix, m.Name) }) {
				continue
			}
			mps, err := memberPods(ctx, m, ns)
			if err != nil {
				return err
			}
			for _, mp := range mps {
				inMember[api.NodeName(api.DefaultNodePrefix, m.Name)+"/"+mp.Name] = mp
			}
		}
		running := 0
		for i := range pods {
			p := &pods[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("host pod %s is %s (%s)", p.Name, p.Status.Phase, p.Status.Reason)
			}
			mp, ok := inMember[p.Spec.NodeName+"/"+p.Name]
			if !ok {
				return fmt.Errorf("no member pod for %s on %s", p.Name, p.Spec.NodeName)
			}
			if mp.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("member pod %s is %s", mp.Name, mp.Status.Phase)
			}
			running++
		}
		if running != n {
			return fmt.Errorf("%d of %d running", running, n)
		}
		return nil
	})
	return pods
}

// memberPods lists the pods of namespace ns in a member.
func memberPods(ctx context.Context, m *framework.Cluster, ns string) ([]corev1.Pod, error) {
	l, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// waitEvent waits for a host event in ns with reason, on the named object (any when empty), whose message contains
// text.
func waitEvent(t *testing.T, ns, object, reason, text string) {
	t.Helper()
	selector := "reason=" + reason
	if object != "" {
		selector += ",involvedObject.name=" + object
	}
	framework.Eventually(t, timeout, fmt.Sprintf("event %s on %q", reason, object), func(ctx context.Context) error {
		evs, err := env.Host.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, text) {
				return nil
			}
		}
		var msgs []string
		for _, e := range evs.Items {
			msgs = append(msgs, e.Message)
		}
		return fmt.Errorf("%d %s events, none mentions %q: %q", len(evs.Items), reason, text, msgs)
	})
}

// waitOneCopyEach waits until the members hold exactly one Running pod per live host pod of pods (those not being
// deleted), each the copy of one of them, and none of a deleted one.
func waitOneCopyEach(t *testing.T, ns string, pods []corev1.Pod, timeout time.Duration) {
	t.Helper()
	live := liveUIDs(pods)
	framework.Eventually(t, timeout, fmt.Sprintf("exactly %d member pods, each of a live host pod", len(live)), func(ctx context.Context) error {
		return oneCopyEach(ctx, ns, live, true)
	})
}

func liveUIDs(pods []corev1.Pod) map[types.UID]bool {
	live := map[types.UID]bool{}
	for i := range pods {
		if pods[i].DeletionTimestamp == nil {
			live[pods[i].UID] = true
		}
	}
	return live
}

// oneCopyEach checks that the members hold exactly one pod per host pod UID of live, none of another, and (running)
// every one Running.
func oneCopyEach(ctx context.Context, ns string, live map[types.UID]bool, running bool) error {
	n := 0
	for _, m := range env.Members {
		mps, err := memberPods(ctx, m, ns)
		if err != nil {
			return err
		}
		for _, mp := range mps {
			if !live[types.UID(mp.Annotations[api.AnnotationHostUID])] {
				return fmt.Errorf("member pod %s/%s (%s) is not the copy of a live host pod: %s", m.Name, mp.Name, memberPodState(&mp), hostPodState(ctx, &mp))
			}
			if running && mp.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("member pod %s/%s is %s", m.Name, mp.Name, mp.Status.Phase)
			}
		}
		n += len(mps)
	}
	if n != len(live) {
		return fmt.Errorf("%d member pods", n)
	}
	return nil
}

// waitOneCopyPerLivePod is waitOneCopyEach for the host pods of app as they are at each look, n of them.
func waitOneCopyPerLivePod(t *testing.T, ns, app string, n int, timeout time.Duration) {
	t.Helper()
	framework.Eventually(t, timeout, fmt.Sprintf("%d live host pods of %s, each with exactly one member pod", n, app), func(ctx context.Context) error {
		pods, err := hostPods(ctx, ns, app)
		if err != nil {
			return err
		}
		live := liveUIDs(pods)
		if len(live) != n {
			return fmt.Errorf("%d live host pods", len(live))
		}
		return oneCopyEach(ctx, ns, live, false)
	})
}

func memberPodState(mp *corev1.Pod) string {
	s := fmt.Sprintf("%s on %q, copy of %s, created %s", mp.Status.Phase, mp.Spec.NodeName, mp.Annotations[api.AnnotationHostUID], mp.CreationTimestamp.Format(time.RFC3339))
	if mp.DeletionTimestamp != nil {
		s += fmt.Sprintf(", deleting since %s (finalizers %v)", mp.DeletionTimestamp.Format(time.RFC3339), mp.Finalizers)
	}
	return s
}

// hostPodState says what the host has under a member pod's name, for failure messages.
func hostPodState(ctx context.Context, mp *corev1.Pod) string {
	h, err := env.Host.Client.CoreV1().Pods(mp.Namespace).Get(ctx, mp.Name, metav1.GetOptions{})
	if err != nil {
		return "host pod: " + err.Error()
	}
	s := fmt.Sprintf("host pod %s on %q, %s", h.UID, h.Spec.NodeName, h.Status.Phase)
	if h.DeletionTimestamp != nil {
		s += fmt.Sprintf(", deleting since %s", h.DeletionTimestamp.Format(time.RFC3339))
	}
	return s
}
