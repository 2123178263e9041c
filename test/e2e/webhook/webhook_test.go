// Package webhook_test runs tether-webhook behind the real host apiserver: scheduling fields parked on the host,
// restored in the member, idempotent under apply and dry-run, and out of the way where it must be.
package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }

func offloadNamespace(t *testing.T) string {
	return env.Host.Namespace(t, map[string]string{api.LabelOffload: api.OffloadEnabled})
}

func pod(name string, spec corev1.PodSpec) *corev1.Pod {
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}}, Spec: spec}
}

func TestNodeSelectorParkedAndRestored(t *testing.T) {
	ns := offloadNamespace(t)
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), pod("ssd", corev1.PodSpec{
		NodeSelector: map[string]string{"disktype": "ssd", api.LabelMember: "m2"},
	}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host, mp := env.RunningIn(t, ns, "ssd", "m2")
	if host.Spec.NodeSelector[api.LabelMember] != "m2" || host.Spec.NodeSelector["disktype"] != "" {
		t.Errorf("host nodeSelector %v: want only %s", host.Spec.NodeSelector, api.LabelMember)
	}
	s, err := api.ParseScheduling(host.Annotations[api.AnnotationScheduling])
	if err != nil || s.NodeSelector["disktype"] != "ssd" {
		t.Errorf("annotation %q: %v", host.Annotations[api.AnnotationScheduling], err)
	}
	if mp.Spec.NodeSelector["disktype"] != "ssd" || len(mp.Spec.NodeSelector) != 1 {
		t.Errorf("member nodeSelector %v, want disktype=ssd alone", mp.Spec.NodeSelector)
	}
	if mp.Spec.NodeName != "m2-node-0" {
		t.Errorf("member pod on %s, want m2's only ssd node m2-node-0", mp.Spec.NodeName)
	}
}

func TestAffinityAndTolerationRestored(t *testing.T) {
	ns := offloadNamespace(t)
	spec := corev1.PodSpec{
		NodeSelector: map[string]string{api.LabelMember: "m1"},
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: sandbox.ZoneLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{"zone-1"}}}}}}}},
		// m1's node in zone-1 is tainted dedicated=special:NoSchedule.
		Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "special", Effect: corev1.TaintEffectNoSchedule}},
	}
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), pod("zonal", spec), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host, mp := env.RunningIn(t, ns, "zonal", "m1")
	if host.Spec.Affinity != nil {
		t.Errorf("host pod keeps affinity %v", host.Spec.Affinity)
	}
	if mp.Spec.NodeName != "m1-node-1" {
		t.Errorf("member pod on %s, want m1-node-1 (zone-1, tainted)", mp.Spec.NodeName)
	}
	if mp.Spec.Affinity == nil || mp.Spec.Affinity.NodeAffinity == nil {
		t.Errorf("member pod lacks the restored node affinity")
	}
}

func TestApplyTwiceAndServerDryRun(t *testing.T) {
	ns := offloadNamespace(t)
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata:
  name: applied
spec:
  nodeSelector: {disktype: ssd}
  tolerations: [{key: example.com/x, operator: Exists, effect: NoSchedule}]
  containers: [{name: app, image: registry.example/app:1}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	dry := env.Host.MustKubectl(t, nil, "create", "--dry-run=server", "-n", ns, "-f", manifest, "-o", "jsonpath={.metadata.annotations.tether\\.io/scheduling}")
	env.Host.MustKubectl(t, nil, "apply", "-n", ns, "-f", manifest)
	first, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), "applied", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.Host.MustKubectl(t, nil, "apply", "-n", ns, "-f", manifest)
	second, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), "applied", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ann := first.Annotations[api.AnnotationScheduling]
	if ann == "" || ann != dry || second.Annotations[api.AnnotationScheduling] != ann {
		t.Errorf("annotations differ: dry-run %q, first %q, second %q", dry, ann, second.Annotations[api.AnnotationScheduling])
	}
	if len(first.Spec.Tolerations) != len(second.Spec.Tolerations) || second.Spec.NodeSelector["disktype"] != "" {
		t.Errorf("second apply changed the pod: tolerations %v, nodeSelector %v", second.Spec.Tolerations, second.Spec.NodeSelector)
	}
}

func TestPodsLeftAlone(t *testing.T) {
	plain := env.Host.Namespace(t, nil)
	offload := offloadNamespace(t)
	spec := corev1.PodSpec{NodeSelector: map[string]string{"disktype": "ssd"}}
	check := func(ns, name string, p *corev1.Pod) {
		t.Helper()
		got, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Annotations[api.AnnotationScheduling]; ok || got.Spec.NodeSelector["disktype"] != "ssd" {
			t.Errorf("%s: mutated: annotations %v nodeSelector %v", name, got.Annotations, got.Spec.NodeSelector)
		}
	}
	check(plain, "unlabelled namespace", pod("plain", spec))
	check(metav1.NamespaceSystem, "kube-system", pod("system", spec))
	ds := pod("ds", spec)
	ds.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "0000", Controller: ptr.To(true)}}
	check(offload, "DaemonSet pod", ds)
}

func TestMalformedAnnotationDenied(t *testing.T) {
	ns := offloadNamespace(t)
	p := pod("bad", corev1.PodSpec{})
	p.Annotations = map[string]string{api.AnnotationScheduling: `{"nodeSelector":`}
	_, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), api.AnnotationScheduling) {
		t.Fatalf("create = %v, want a denial naming %s", err, api.AnnotationScheduling)
	}
}

func TestWebhookDownDoesNotBlockPods(t *testing.T) {
	ns := offloadNamespace(t)
	env.StopProcess(t, sandbox.TetherWebhook, syscall.SIGTERM)
	defer env.StartProcess(t, sandbox.TetherWebhook)
	got, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), pod("while-down", corev1.PodSpec{
		NodeSelector: map[string]string{"disktype": "ssd"}}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod creation failed while the webhook is down: %v", err)
	}
	if _, ok := got.Annotations[api.AnnotationScheduling]; ok {
		t.Error("pod mutated although the webhook is down")
	}
}
