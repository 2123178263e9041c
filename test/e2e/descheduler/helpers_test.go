package descheduler_test

import (
	"context"
	"fmt"
	"os"
	"strings"
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
	"github.com/tetherkube/tether/test/e2e/framework"
)

const timeout = 2 * time.Minute

func countLines(path, part string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, part) {
			n++
		}
	}
	return n, nil
}

func node(member string) string { return api.NodeName(api.DefaultNodePrefix, member) }

// free leaves, on each member node named, that much CPU free: a pod of the member's own (not Tether's) on that node
// takes the rest of its DefaultNodeCPU. The pods go when the test ends; free then waits until every virtual node's
// digest shows largest, per member, the largest free CPU on one of its usable nodes.
func free(t *testing.T, cpu map[string]map[string]string, largest map[string]string) {
	t.Helper()
	env.LeaveFree(t, cpu)
	waitLargestFree(t, largest)
}

// waitLargestFree waits until the digest of each member's virtual node shows that largest free CPU.
func waitLargestFree(t *testing.T, largest map[string]string) {
	t.Helper()
	framework.Eventually(t, timeout, fmt.Sprintf("digests %v", largest), func(ctx context.Context) error {
		for member, want := range largest {
			n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node(member), metav1.GetOptions{})
			if err != nil {
				return err
			}
			f, err := api.ParseFragments(n.Annotations[api.AnnotationFragments])
			if err != nil {
				return err
			}
			if got := f.LargestFree[corev1.ResourceCPU]; got.Cmp(resource.MustParse(want)) != 0 {
				return fmt.Errorf("%s: largest free CPU %s, want %s", n.Name, got.String(), want)
			}
		}
		return nil
	})
}

// fragmented is the scene of the test 1: m1's nodes have 2 CPU free each, m2 has one node with 4 free.
func fragmented(t *testing.T) {
	free(t, map[string]map[string]string{
		"m1": {"m1-node-0": "2", "m1-node-1": "2", "m1-node-2": "2"},
		"m2": {"m2-node-0": "4", "m2-node-1": "0", "m2-node-2": "0"},
	}, map[string]string{"m1": "2", "m2": "4"})
}

// setCordon cordons or uncordons a virtual node through the host, as kubectl cordon does.
func setCordon(t *testing.T, member string, on bool) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := env.Host.Client.CoreV1().Nodes().Patch(t.Context(), node(member), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// pinnedTo makes the host bind the next pods to member: the other virtual nodes are cordoned until release is called
// (or the test ends), so the pods carry no constraint of their own and their replacements may go anywhere.
func pinnedTo(t *testing.T, member string, others ...string) (release func()) {
	t.Helper()
	for _, o := range others {
		setCordon(t, o, true)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		for _, o := range others {
			setCordon(t, o, false)
		}
	}
	t.Cleanup(release)
	return release
}

func offloadNamespace(t *testing.T) string {
	return env.Host.Namespace(t, map[string]string{api.LabelOffload: api.OffloadEnabled})
}

// deployment creates a Deployment of one pod asking cpu in ns; opts change its pod template.
func deployment(t *testing.T, ns, name, cpu string, opts ...func(*corev1.PodSpec)) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1), Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
			},
		},
	}
	for _, o := range opts {
		o(&d.Spec.Template.Spec)
	}
	d, err := env.Host.Client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pods lists the live pods of app in ns.
func pods(ctx context.Context, ns, app string) ([]corev1.Pod, error) {
	l, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	var live []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live, nil
}

func unschedulable(p *corev1.Pod) *corev1.PodCondition {
	for i, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// stuckIn waits until the one pod of app is bound to member's virtual node and its member scheduler leaves it
// unschedulable; it returns the pod.
func stuckIn(t *testing.T, ns, app, member string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	framework.Eventually(t, timeout, fmt.Sprintf("pod of %s unschedulable in %s", app, member), func(ctx context.Context) error {
		ps, err := pods(ctx, ns, app)
		if err != nil {
			return err
		}
		if len(ps) != 1 {
			return fmt.Errorf("%d pods", len(ps))
		}
		p := ps[0]
		if p.Spec.NodeName != node(member) {
			return fmt.Errorf("pod %s on %q", p.Name, p.Spec.NodeName)
		}
		if unschedulable(&p) == nil {
			return fmt.Errorf("pod %s: conditions %v", p.Name, p.Status.Conditions)
		}
		pod = &p
		return nil
	})
	return pod
}

// runningElsewhere waits until app has one pod Running on member's virtual node that is not the pod old.
func runningElsewhere(t *testing.T, ns, app, member string, old types.UID) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	framework.Eventually(t, timeout, fmt.Sprintf("a new pod of %s Running in %s", app, member), func(ctx context.Context) error {
		ps, err := pods(ctx, ns, app)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.UID == old {
				return fmt.Errorf("pod %s still there on %s", p.Name, p.Spec.NodeName)
			}
			if p.Spec.NodeName == node(member) && p.Status.Phase == corev1.PodRunning {
				pod = &p
				return nil
			}
		}
		return fmt.Errorf("no Running pod on %s among %d", node(member), len(ps))
	})
	return pod
}

// eventsAbout lists the host events of reason about the pod name in ns.
func eventsAbout(ctx context.Context, ns, name, reason string) ([]corev1.Event, error) {
	l, err := env.Host.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason + ",involvedObject.name=" + name})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// waitEvent waits for an event of reason about the pod whose message holds text, and returns it.
func waitEvent(t *testing.T, ns, name, reason, text string) corev1.Event {
	t.Helper()
	var ev corev1.Event
	framework.Eventually(t, timeout, fmt.Sprintf("event %s on %s", reason, name), func(ctx context.Context) error {
		evs, err := eventsAbout(ctx, ns, name, reason)
		if err != nil {
			return err
		}
		var msgs []string
		for _, e := range evs {
			if strings.Contains(e.Message, text) {
				ev = e
				return nil
			}
			msgs = append(msgs, e.Message)
		}
		return fmt.Errorf("%d events, none mentions %q: %q", len(evs), text, msgs)
	})
	return ev
}

// avoided is what the avoid record says about the controller uid now.
func avoided(ctx context.Context, uid types.UID) ([]string, error) {
	cm, err := env.Host.Client.CoreV1().ConfigMaps(api.DefaultNamespace).Get(ctx, api.DefaultAvoidConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec, err := api.ParseAvoid(cm.Data)
	if err != nil {
		return nil, err
	}
	return rec.Members(string(uid), time.Now()), nil
}

// avoidsMember reports whether the pod's required node affinity excludes member.
func avoidsMember(p *corev1.Pod, member string) bool {
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, r := range term.MatchExpressions {
			if r.Key == api.LabelMember && r.Operator == corev1.NodeSelectorOpNotIn && len(r.Values) > 0 {
				for _, v := range r.Values {
					if v == member {
						return true
					}
				}
			}
		}
	}
	return false
}

// controllerUID is the UID of the pod's controller.
func controllerUID(t *testing.T, p *corev1.Pod) types.UID {
	t.Helper()
	o := metav1.GetControllerOf(p)
	if o == nil {
		t.Fatalf("pod %s has no controller", p.Name)
	}
	return o.UID
}

// holds checks, over n descheduling cycles, that the pod uid of app is still the one pod, where it was.
func holds(t *testing.T, ns, app string, uid types.UID, n int) {
	t.Helper()
	if err := waitCycles(t.Context(), env, n, time.Duration(n)*30*time.Second); err != nil {
		t.Fatal(err)
	}
	ps, err := pods(t.Context(), ns, app)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].UID != uid {
		var got []string
		for _, p := range ps {
			got = append(got, p.Name+"@"+p.Spec.NodeName)
		}
		t.Fatalf("after %d descheduling cycles the pods of %s are %v, want the one pod %s untouched", n, app, got, uid)
	}
}

func resourcePods(n int64) *resource.Quantity { return resource.NewQuantity(n, resource.DecimalSI) }
