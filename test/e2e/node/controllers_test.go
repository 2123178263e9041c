package node_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

// kubectl runs the real kubectl against the host and fails the test unless it succeeds.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	res, err := env.Host.Kubectl(t.Context(), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("kubectl %s: exit %d: %s", strings.Join(args, " "), res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// usesConfigMapAndSecret mounts ConfigMap cm and Secret secret.
func usesConfigMapAndSecret(cm, secret string) podSpecOpt {
	return func(s *corev1.PodSpec) {
		s.Volumes = append(s.Volumes,
			corev1.Volume{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}},
			corev1.Volume{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}})
	}
}

// waitCopy waits until the member copy of a host ConfigMap (secret: false) or Secret has the value v under key k
// and is the copy of the host object with that UID; it returns how long that took.
func waitCopy(t *testing.T, ns, name string, secret bool, k, v string, uid types.UID) time.Duration {
	t.Helper()
	start := time.Now()
	m1 := env.Member(t, "m1").Client.CoreV1()
	framework.Eventually(t, timeout, fmt.Sprintf("member copy of %s has %s=%s", name, k, v), func(ctx context.Context) error {
		var (
			got  string
			meta metav1.ObjectMeta
		)
		if secret {
			s, err := m1.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			got, meta = string(s.Data[k]), s.ObjectMeta
		} else {
			c, err := m1.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			got, meta = c.Data[k], c.ObjectMeta
		}
		if got != v || meta.Annotations[api.AnnotationHostUID] != string(uid) || meta.Labels[api.LabelManagedBy] != api.ManagedByTether {
			return fmt.Errorf("%s=%q, copy of %s", k, got, meta.Annotations[api.AnnotationHostUID])
		}
		return nil
	})
	return time.Since(start)
}

// Copies follow their host objects: updated in place, replaced when the host object is replaced (new UID) or
// immutable, and removed after the grace period once no pod uses them.
func TestCopiesFollowTheHost(t *testing.T) {
	env.RestartProcessWith(t, sandbox.TetherNode, "--copy-grace", "5s")
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	cms, secrets := env.Host.Client.CoreV1().ConfigMaps(ns), env.Host.Client.CoreV1().Secrets(ns)
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"}, Data: map[string]string{"k": "v1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, StringData: map[string]string{"k": "v1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "frozen"}, Data: map[string]string{"k": "v1"}, Immutable: ptr.To(true)}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runOnM1(t, ns, "user", usesConfigMapAndSecret("conf", "creds"), func(s *corev1.PodSpec) {
		s.Volumes = append(s.Volumes, corev1.Volume{Name: "frozen", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "frozen"}}}})
	})
	waitCopy(t, ns, "conf", false, "k", "v1", cm.UID)

	// Updated on the host → updated in the member within seconds.
	cm.Data["k"] = "v2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec.StringData = map[string]string{"k": "v2"}
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if took := waitCopy(t, ns, "conf", false, "k", "v2", cm.UID); took > 5*time.Second {
		t.Errorf("the ConfigMap copy took %s to follow, want ≤ 5 s", took.Round(100*time.Millisecond))
	}
	if took := waitCopy(t, ns, "creds", true, "k", "v2", sec.UID); took > 5*time.Second {
		t.Errorf("the Secret copy took %s to follow, want ≤ 5 s", took.Round(100*time.Millisecond))
	}

	// Replaced on the host (same name, new UID) → replaced in the member; an immutable one is replaced too.
	if err := cms.Delete(ctx, "conf", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"}, Data: map[string]string{"k": "v3"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitCopy(t, ns, "conf", false, "k", "v3", cm.UID)
	if err := cms.Delete(ctx, "frozen", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	frozen, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "frozen"}, Data: map[string]string{"k": "v2"}, Immutable: ptr.To(true)}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitCopy(t, ns, "frozen", false, "k", "v2", frozen.UID)

	// The last pod that uses them goes → the copies go after the grace period, not before.
	if err := env.Host.Client.CoreV1().Pods(ns).Delete(ctx, "user", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "host pod gone", func(ctx context.Context) error {
		if _, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, "user", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	gone := time.Now()
	m1 := env.Member(t, "m1").Client.CoreV1()
	framework.Eventually(t, timeout, "copies collected", func(ctx context.Context) error {
		for _, name := range []string{"conf", "frozen"} {
			if _, err := m1.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("configmap %s: %v", name, err)
			}
		}
		if _, err := m1.Secrets(ns).Get(ctx, "creds", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("secret creds: %v", err)
		}
		return nil
	})
	if took := time.Since(gone); took < 4*time.Second {
		t.Errorf("copies collected %s after the last pod went, before the 5 s grace period", took.Round(100*time.Millisecond))
	}
}

// A member object of the same name that Tether does not own is never updated or collected; the pod waits.
func TestCopiesLeaveUnownedObjectsAlone(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1").Client.CoreV1()
	if _, err := m1.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m1.Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{}) })
	theirs, err := m1.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Data: map[string]string{"k": "member"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostCMs := env.Host.Client.CoreV1().ConfigMaps(ns)
	var mine *corev1.ConfigMap
	for _, name := range []string{"mine", "theirs"} {
		cm, err := hostCMs.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "host"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "mine" {
			mine = cm
		}
	}
	// "mine" sorts first: its copy is made before the conflict stops the pod.
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "user"},
		Spec: offloadedSpec(onMember("m1"), func(s *corev1.PodSpec) {
			for _, name := range []string{"mine", "theirs"} {
				s.Volumes = append(s.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: name}}}})
			}
		})}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "user", "MemberObjectConflict", "configmap "+ns+"/theirs")
	waitCopy(t, ns, "mine", false, "k", "host", mine.UID)
	// Both change on the host: the copy follows, the member's own object does not.
	for _, name := range []string{"theirs", "mine"} {
		if _, err := hostCMs.Patch(ctx, name, types.MergePatchType, []byte(`{"data":{"k":"host-2"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitCopy(t, ns, "mine", false, "k", "host-2", mine.UID)
	got, err := m1.ConfigMaps(ns).Get(ctx, "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != theirs.ResourceVersion || got.Data["k"] != "member" {
		t.Errorf("the member's own ConfigMap changed: %v (resourceVersion %s → %s)", got.Data, theirs.ResourceVersion, got.ResourceVersion)
	}
	if p, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, "user", metav1.GetOptions{}); err != nil || p.Status.Phase == corev1.PodRunning {
		t.Errorf("the pod runs with the member's own ConfigMap: %v", err)
	}
}

// tether-node cannot read Secrets in a member: a member Secret of the name a host pod uses is still never written
// over nor used (the pod waits), and a copy that a member admin replaced with a Secret of their own is never
// written over either (every write names the copy's UID). A record deleted by hand takes its copies with it (the
// member's garbage collector) and they come back.
func TestSecretCopiesLeaveUnownedSecretsAlone(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1").Client.CoreV1()
	if _, err := m1.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m1.Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{}) })
	theirs, err := m1.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, StringData: map[string]string{"k": "member"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostSecrets := env.Host.Client.CoreV1().Secrets(ns)
	var mine *corev1.Secret
	for _, name := range []string{"mine", "theirs"} {
		s, err := hostSecrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"k": "host"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "mine" {
			mine = s
		}
	}
	uses := func(names ...string) podSpecOpt {
		return func(s *corev1.PodSpec) {
			for _, name := range names {
				s.Volumes = append(s.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}})
			}
		}
	}
	// "mine" sorts first: its copy is made before the conflict stops the pod.
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "user"},
		Spec: offloadedSpec(onMember("m1"), uses("mine", "theirs"))}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "user", "MemberObjectConflict", "secret "+ns+"/theirs")
	waitCopy(t, ns, "mine", true, "k", "host", mine.UID)
	// Both change on the host: the copy follows, the member's own Secret does not.
	for _, name := range []string{"theirs", "mine"} {
		if _, err := hostSecrets.Patch(ctx, name, types.MergePatchType, []byte(`{"stringData":{"k":"host-2"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitCopy(t, ns, "mine", true, "k", "host-2", mine.UID)
	sameAsBefore := func(name string, before *corev1.Secret) {
		t.Helper()
		got, err := m1.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.ResourceVersion != before.ResourceVersion || string(got.Data["k"]) != "member" {
			t.Errorf("the member's own Secret %s changed: %s (resourceVersion %s → %s)", name, got.Data["k"], before.ResourceVersion, got.ResourceVersion)
		}
	}
	sameAsBefore("theirs", theirs)
	if p, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, "user", metav1.GetOptions{}); err != nil || p.Status.Phase == corev1.PodRunning {
		t.Errorf("the pod runs with the member's own Secret: %v", err)
	}

	// The record deleted by hand: the garbage collector takes the copy, Tether makes both again. (Read with
	// retries: the member's garbage collector sometimes deletes a fresh copy as if its record were gone, and
	// Tether writes it again; see the closing note of this change.)
	var cp *corev1.Secret
	framework.Eventually(t, timeout, "the copy of mine", func(ctx context.Context) error {
		var err error
		cp, err = m1.Secrets(ns).Get(ctx, "mine", metav1.GetOptions{})
		return err
	})
	record := api.Owner{ClusterID: cp.Labels[api.LabelHostCluster], NodeName: cp.Labels[api.LabelNode]}.SecretRecordName()
	if len(cp.OwnerReferences) != 1 || cp.OwnerReferences[0].Name != record {
		t.Errorf("the copy's owners %+v, want the record %s", cp.OwnerReferences, record)
	}
	old, err := m1.ConfigMaps(ns).Get(ctx, record, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.ConfigMaps(ns).Delete(ctx, record, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the record %s: %v", record, err)
	}
	// The copy comes back owned by the new record (until then the collector may still take the old one).
	framework.Eventually(t, timeout, "the record made again, owning the copy", func(ctx context.Context) error {
		cm, err := m1.ConfigMaps(ns).Get(ctx, record, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.UID == old.UID {
			return fmt.Errorf("the record %s is the one deleted", record)
		}
		c, err := m1.Secrets(ns).Get(ctx, "mine", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].UID != cm.UID {
			return fmt.Errorf("the copy's owners %+v, want the record %s", c.OwnerReferences, cm.UID)
		}
		return nil
	})
	waitCopy(t, ns, "mine", true, "k", "host-2", mine.UID)

	// A member admin replaces the copy with a Secret of their own: the next host change does not write over it.
	if err := m1.Secrets(ns).Delete(ctx, "mine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	replaced, err := m1.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mine"}, StringData: map[string]string{"k": "member"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hostSecrets.Patch(ctx, "mine", types.MergePatchType, []byte(`{"stringData":{"k":"host-3"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "user", "MemberObjectConflict", "secret "+ns+"/mine")
	sameAsBefore("mine", replaced)
}

// `kubectl label` on a host pod reaches its member pod; a label removed there is removed in the member.
func TestPodLabelsReachTheMember(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	runOnM1(t, ns, "x")
	kubectl(t, "label", "-n", ns, "pod", "x", "tier=gold", "team=blue")
	m1 := env.Member(t, "m1").Client.CoreV1().Pods(ns)
	start := time.Now()
	labelled := func(want map[string]string, absent ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			p, err := m1.Get(ctx, "x", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for k, v := range want {
				if p.Labels[k] != v {
					return fmt.Errorf("labels %v", p.Labels)
				}
			}
			for _, k := range absent {
				if _, ok := p.Labels[k]; ok {
					return fmt.Errorf("labels %v", p.Labels)
				}
			}
			if p.Labels[api.LabelManagedBy] != api.ManagedByTether {
				t.Fatalf("the ownership labels went: %v", p.Labels)
			}
			return nil
		}
	}
	framework.Eventually(t, timeout, "tier=gold in the member", labelled(map[string]string{"tier": "gold", "team": "blue"}))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the label took %s to reach the member, want ≤ 5 s", took.Round(100*time.Millisecond))
	}
	kubectl(t, "label", "-n", ns, "pod", "x", "team-")
	framework.Eventually(t, timeout, "team removed in the member", labelled(map[string]string{"tier": "gold"}, "team"))
}

// A member pod its member cannot schedule shows the member scheduler's FailedScheduling on the host pod, with the
// member named: 20 CPU fit the virtual node (two usable 16-CPU nodes) but no single node of m1.
func TestMemberEventsReachTheHost(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nowhere"},
		Spec: offloadedSpec(onMember("m1"), func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20")}
		})}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "nowhere", "FailedScheduling", "member m1")
	evs, err := env.Host.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=nowhere,reason=FailedScheduling"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Source.Component != "member/m1" || e.InvolvedObject.Kind != "Pod" || e.Count < 1 {
			t.Errorf("relayed event from %q on %s, count %d", e.Source.Component, e.InvolvedObject.Kind, e.Count)
		}
	}
	if out := kubectl(t, "describe", "pod", "-n", ns, "nowhere"); !strings.Contains(out, "member m1") || !strings.Contains(out, "FailedScheduling") {
		t.Errorf("kubectl describe pod shows no member event:\n%s", out)
	}
}

// memberSliceIPs are the addresses of the EndpointSlices Tether mirrored for a Service in a member.
func memberSliceIPs(ctx context.Context, m *framework.Cluster, ns, service string) ([]string, error) {
	l, err := m.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service + "," + discoveryv1.LabelManagedBy + "=" + api.EndpointSliceManagedBy})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			ips = append(ips, e.Addresses...)
		}
	}
	slices.Sort(ips)
	return ips, nil
}

// A host Service whose pods run in both members has, in each member, a copy without selector whose mirrored
// EndpointSlices list the pods of both; a pod scaled away leaves them; the Service deleted on the host goes.
func TestServicesReachEveryMember(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	hostSvcs := env.Host.Client.CoreV1().Services(ns)
	labels := map[string]string{"app": "web"}
	port := []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}
	if _, err := hostSvcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: port}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hostSvcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-headless"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: port, ClusterIP: corev1.ClusterIPNone}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hostSvcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-nodeport"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: port, Type: corev1.ServiceTypeNodePort}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deployments := env.Host.Client.AppsV1().Deployments(ns)
	for _, m := range []string{"m1", "m2"} {
		d := deployment(ns, "web-"+m, 1, onMember(m))
		d.Spec.Template.Labels = map[string]string{"app": "web", "member": m}
		d.Spec.Selector.MatchLabels = d.Spec.Template.Labels
		if _, err := deployments.Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var ips []string
	framework.Eventually(t, timeout, "both pods Running with IPs", func(ctx context.Context) error {
		pods, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		ips = nil
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				ips = append(ips, p.Status.PodIP)
			}
		}
		if len(ips) != 2 {
			return fmt.Errorf("pod IPs %v", ips)
		}
		slices.Sort(ips)
		return nil
	})
	for _, m := range env.Members {
		framework.Eventually(t, timeout, m.Name+": Services web without selector, slices with both pods", func(ctx context.Context) error {
			svc, err := m.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if svc.Spec.Selector != nil || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Labels[api.LabelManagedBy] != api.ManagedByTether {
				t.Fatalf("%s: service web %+v", m.Name, svc.Spec)
			}
			got, err := memberSliceIPs(ctx, m, ns, "web")
			if err != nil {
				return err
			}
			if !slices.Equal(got, ips) {
				return fmt.Errorf("slice addresses %v, want %v", got, ips)
			}
			headless, err := m.Client.CoreV1().Services(ns).Get(ctx, "web-headless", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if headless.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: the headless copy has cluster IP %s", m.Name, headless.Spec.ClusterIP)
			}
			np, err := m.Client.CoreV1().Services(ns).Get(ctx, "web-nodeport", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if np.Spec.Type != corev1.ServiceTypeClusterIP || np.Spec.Ports[0].NodePort != 0 {
				t.Errorf("%s: the NodePort copy is %s with node port %d, want ClusterIP", m.Name, np.Spec.Type, np.Spec.Ports[0].NodePort)
			}
			return nil
		})
	}

	// Scaled away in m2: its pod leaves the slices of both members within seconds.
	if _, err := deployments.Patch(ctx, "web-m2", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var left []string
	framework.Eventually(t, timeout, "one pod left", func(ctx context.Context) error {
		pods, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "member=m1"})
		if err != nil || len(pods.Items) != 1 {
			return fmt.Errorf("pods %v: %v", pods, err)
		}
		left = []string{pods.Items[0].Status.PodIP}
		hostSlices, err := env.Host.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		var hostIPs []string
		for _, s := range hostSlices.Items {
			for _, e := range s.Endpoints {
				hostIPs = append(hostIPs, e.Addresses...)
			}
		}
		if !slices.Equal(hostIPs, left) {
			return fmt.Errorf("host slices %v", hostIPs)
		}
		return nil
	})
	hostUpdated := time.Now()
	// m2 runs no Tether pod of the namespace any more, but keeps its copies for the grace period.
	framework.Eventually(t, timeout, "the member slices follow", func(ctx context.Context) error {
		for _, m := range env.Members {
			got, err := memberSliceIPs(ctx, m, ns, "web")
			if err != nil {
				return err
			}
			if !slices.Equal(got, left) {
				return fmt.Errorf("%s: slice addresses %v, want %v", m.Name, got, left)
			}
		}
		return nil
	})
	if took := time.Since(hostUpdated); took > 5*time.Second {
		t.Errorf("the member slices followed the host's %s later, want ≤ 5 s", took.Round(100*time.Millisecond))
	}

	// Deleted on the host: gone in the members.
	if err := hostSvcs.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "service web gone in the members", func(ctx context.Context) error {
		for _, m := range env.Members {
			if _, err := m.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s: %v", m.Name, err)
			}
			if got, err := memberSliceIPs(ctx, m, ns, "web"); err != nil || len(got) > 0 {
				return fmt.Errorf("%s: slices %v, %v", m.Name, got, err)
			}
		}
		return nil
	})
}

// A Service that exists when the first pod of a namespace goes to a member is copied there before that pod, so
// that the member's kubelet gives the pod the service's environment variables (WEB_SERVICE_HOST, …).
func TestServiceCopiedBeforeTheFirstPod(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	if _, err := env.Host.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The resource version a member object was created with, as its ADDED event carries it. Resource versions of
	// one cluster grow with every write (etcd's revision), so they order the two creates.
	m1 := env.Member(t, "m1").Client.CoreV1()
	created := func(w watch.Interface, err error) <-chan int64 {
		if err != nil {
			t.Fatal(err)
		}
		out := make(chan int64, 1)
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if o, ok := ev.Object.(metav1.Object); ok && ev.Type == watch.Added {
					rv, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
					out <- rv
					return
				}
			}
		}()
		return out
	}
	svcCreated := created(m1.Services(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=web"}))
	podCreated := created(m1.Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=client"}))
	runOnM1(t, ns, "client")
	var sv, pv int64
	for _, c := range []struct {
		ch  <-chan int64
		out *int64
	}{{svcCreated, &sv}, {podCreated, &pv}} {
		select {
		case *c.out = <-c.ch:
		case <-time.After(timeout):
			t.Fatal("no ADDED event for the member Service or pod")
		}
	}
	if sv == 0 || pv == 0 || sv > pv {
		t.Errorf("the Service copy was created at resource version %d, the pod at %d: want the Service first", sv, pv)
	}
}

// A pod's ServiceAccount is copied with its annotations, token mounting and image pull Secrets, and follows the
// host's changes.
func TestServiceAccountCopyFollows(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	if _, err := env.Host.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, err := env.Host.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: "builder", Annotations: map[string]string{"example.com/role": "build"}},
		AutomountServiceAccountToken: ptr.To(false), ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runOnM1(t, ns, "build", func(s *corev1.PodSpec) { s.ServiceAccountName = "builder" })
	m1 := env.Member(t, "m1").Client.CoreV1()
	copied := func(role string) func(context.Context) error {
		return func(ctx context.Context) error {
			c, err := m1.ServiceAccounts(ns).Get(ctx, "builder", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if c.Annotations["example.com/role"] != role || c.AutomountServiceAccountToken == nil || *c.AutomountServiceAccountToken ||
				len(c.ImagePullSecrets) != 1 || c.Annotations[api.AnnotationHostUID] != string(sa.UID) {
				return fmt.Errorf("copy %+v", c)
			}
			if _, err := m1.Secrets(ns).Get(ctx, "registry", metav1.GetOptions{}); err != nil {
				return fmt.Errorf("its image pull Secret: %w", err)
			}
			return nil
		}
	}
	framework.Eventually(t, timeout, "ServiceAccount copied with its pull Secret", copied("build"))
	if _, err := env.Host.Client.CoreV1().ServiceAccounts(ns).Patch(ctx, "builder", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"example.com/role":"deploy"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "ServiceAccount copy follows", copied("deploy"))
}

// A host namespace deleted: its pods go, then their copies, then the member namespace Tether created.
func TestMemberNamespaceCollected(t *testing.T) {
	env.RestartProcessWith(t, sandbox.TetherNode, "--copy-grace", "3s")
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	if _, err := env.Host.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"},
		Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Host.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runOnM1(t, ns, "user", usesConfigMapAndSecret("conf", "conf-secret"), func(s *corev1.PodSpec) {
		s.Volumes[1].Secret.Optional = ptr.To(true)
	})
	m1 := env.Member(t, "m1").Client.CoreV1()
	if n, err := m1.Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || n.Labels[api.LabelManagedBy] != api.ManagedByTether {
		t.Fatalf("member namespace %v: %v", n, err)
	}
	if err := env.Host.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*timeout, "member namespace gone", func(ctx context.Context) error {
		n, err := m1.Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("namespace %s", n.Status.Phase)
	})
}

// A member namespace Tether did not create is never deleted, even once nothing of Tether's is left in it.
func TestUnownedMemberNamespaceKept(t *testing.T) {
	env.RestartProcessWith(t, sandbox.TetherNode, "--copy-grace", "3s")
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1").Client.CoreV1()
	if _, err := m1.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m1.Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{}) })
	if _, err := env.Host.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"},
		Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runOnM1(t, ns, "user", func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}}}
	})
	if err := env.Host.Client.CoreV1().Pods(ns).Delete(ctx, "user", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The copy goes after the grace period: the clock that says the namespace had its chance to go too.
	framework.Eventually(t, timeout, "copy collected", func(ctx context.Context) error {
		if _, err := m1.ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	// A namespace of Tether's would go within a grace period or two now; the member's own must stay.
	gone := time.Now()
	framework.Eventually(t, timeout, "the member's own namespace kept for two more grace periods", func(ctx context.Context) error {
		n, err := m1.Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil || n.DeletionTimestamp != nil {
			t.Fatalf("the member's own namespace: %v, deleting %v", err, n != nil && n.DeletionTimestamp != nil)
		}
		if time.Since(gone) < 6*time.Second {
			return fmt.Errorf("%s so far", time.Since(gone).Round(time.Second))
		}
		return nil
	})
}

// `kubectl debug` adds its ephemeral container to the member pod.
func TestKubectlDebugReachesTheMember(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	runOnM1(t, ns, "x")
	kubectl(t, "debug", "-n", ns, "x", "--image=busybox", "--container=dbg")
	m1 := env.Member(t, "m1").Client.CoreV1().Pods(ns)
	framework.Eventually(t, timeout, "the member pod has the debug container", func(ctx context.Context) error {
		p, err := m1.Get(ctx, "x", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Spec.EphemeralContainers) != 1 || p.Spec.EphemeralContainers[0].Name != "dbg" || p.Spec.EphemeralContainers[0].Image != "busybox" {
			return fmt.Errorf("ephemeral containers %v", p.Spec.EphemeralContainers)
		}
		return nil
	})
}

// An in-place resize is possible where the member's kubelets support it, which they say by reporting the resources
// of running containers. The host pod's status is the member pod's, so the host apiserver takes a resize exactly
// when the member would: kwok's members report none, and the host refuses as their apiservers would. (With members
// that report them, controllers/podmeta relays the resize to the member pod's pods/resize.)
func TestResizeFollowsWhatTheMemberReports(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	_, mp := runOnM1(t, ns, "x")
	if mp.Status.ContainerStatuses[0].Resources != nil {
		t.Fatalf("kwok reports container resources now (%v): relay a resize here instead", mp.Status.ContainerStatuses[0].Resources)
	}
	patch := `{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"200m"}}}]}}`
	for _, c := range []*framework.Cluster{env.Host, env.Member(t, "m1")} {
		res, err := c.Kubectl(t.Context(), nil, "patch", "-n", ns, "pod", "x", "--subresource", "resize", "-p", patch)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Pod running on node without support for resize") {
			t.Errorf("%s: resize: exit %d: %s", c.Name, res.ExitCode, res.Stderr)
		}
	}
}
