// Package node_test runs tether-node against real host and member control planes: the pod round trip, the
// virtual node's capacity and conditions, restarts, outages and ownership.
package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/provider/forge"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }

func TestVirtualNodes(t *testing.T) {
	for _, m := range env.Members {
		n, err := env.Host.Client.CoreV1().Nodes().Get(t.Context(), api.NodeName(api.DefaultNodePrefix, m.Name), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{api.NodeTypeKey: api.NodeType, "kubernetes.io/role": "agent", api.LabelMember: m.Name,
			"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"} {
			if n.Labels[k] != v {
				t.Errorf("%s: label %s=%q, want %q", n.Name, k, n.Labels[k], v)
			}
		}
		if !slices.ContainsFunc(n.Spec.Taints, func(tt corev1.Taint) bool {
			return tt.Key == api.TaintKey && tt.Value == api.TaintValue && tt.Effect == corev1.TaintEffectNoSchedule
		}) {
			t.Errorf("%s: taints %v lack the virtual-node taint", n.Name, n.Spec.Taints)
		}
		if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Type != corev1.NodeInternalIP || n.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 {
			t.Errorf("%s: addresses %v, kubelet port %d", n.Name, n.Status.Addresses, n.Status.DaemonEndpoints.KubeletEndpoint.Port)
		}
		// kubectl get nodes -o wide: the member's Kubernetes version and what its nodes run.
		v, err := m.Client.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if info := n.Status.NodeInfo; info.KubeletVersion != v.GitVersion || info.OSImage != sandbox.NodeOSImage || info.ContainerRuntimeVersion != sandbox.NodeRuntime {
			t.Errorf("%s: node info %+v, want version %s, OS image %q, runtime %q", n.Name, info, v.GitVersion, sandbox.NodeOSImage, sandbox.NodeRuntime)
		}
		memberNodes, err := m.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		usable := 0
		for _, mn := range memberNodes.Items {
			if forge.UsableNode(&mn) {
				usable++
			}
		}
		f, err := api.ParseFragments(n.Annotations[api.AnnotationFragments])
		if err != nil {
			t.Errorf("%s: fragments annotation: %v", n.Name, err)
		} else if f.UsableNodes != usable || usable == 0 {
			t.Errorf("%s: fragments count %d usable nodes, want %d", n.Name, f.UsableNodes, usable)
		}
		// The node summary counts the member's schedulable nodes, tainted ones included (with their taints).
		schedulable, tainted := 0, 0
		for _, mn := range memberNodes.Items {
			if forge.SchedulableNode(&mn) {
				schedulable++
				if len(mn.Spec.Taints) > 0 {
					tainted++
				}
			}
		}
		if s, err := api.ParseNodeSummary(n.Annotations[api.AnnotationNodeSummary]); err != nil {
			t.Errorf("%s: node summary: %v", n.Name, err)
		} else {
			nodes, withTaints := 0, 0
			for _, c := range s.Classes {
				nodes += c.Nodes
				if len(c.Taints) > 0 {
					withTaints += c.Nodes
				}
			}
			if nodes != schedulable || withTaints != tainted {
				t.Errorf("%s: node summary counts %d nodes, %d tainted; want %d, %d: %s", n.Name, nodes, withTaints, schedulable, tainted, n.Annotations[api.AnnotationNodeSummary])
			}
		}
	}
}

func TestDeploymentRoundTrip(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(ns, "web", 3))
	pods := waitRunning(t, ns, "web", 3)
	for i := range pods {
		host := &pods[i]
		mp, m, err := memberPodOf(t.Context(), host)
		if err != nil {
			t.Fatal(err)
		}
		owner := api.Owner{NodeName: host.Spec.NodeName, ClusterID: mp.Labels[api.LabelHostCluster]}
		if mp.Labels[api.LabelHostCluster] == "" || !owner.Owns(mp) || mp.Annotations[api.AnnotationHostUID] != string(host.UID) {
			t.Errorf("member pod %s/%s: labels %v annotations %v lack ownership", m.Name, mp.Name, mp.Labels, mp.Annotations)
		}
		node, err := m.Client.CoreV1().Nodes().Get(t.Context(), mp.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Labels["type"] != "kwok" {
			t.Errorf("member pod %s runs on %s, not a kwok node", mp.Name, node.Name)
		}
		if host.Status.PodIP == "" || host.Status.PodIP != mp.Status.PodIP {
			t.Errorf("host pod IP %q, member pod IP %q", host.Status.PodIP, mp.Status.PodIP)
		}
		if slices.ContainsFunc(mp.Spec.Tolerations, func(tt corev1.Toleration) bool { return tt.Key == api.TaintKey }) {
			t.Errorf("member pod %s keeps the virtual-node toleration", mp.Name)
		}
	}

	t.Run("scale to zero", func(t *testing.T) {
		if _, err := env.Host.Client.AppsV1().Deployments(ns).Patch(t.Context(), "web", types.StrategicMergePatchType,
			[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitNoPods(t, ns)
	})

	t.Run("delete", func(t *testing.T) {
		createDeployment(t, deployment(ns, "gone", 2))
		waitRunning(t, ns, "gone", 2)
		if err := env.Host.Client.AppsV1().Deployments(ns).Delete(t.Context(), "gone", metav1.DeleteOptions{
			PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
			t.Fatal(err)
		}
		waitNoPods(t, ns)
	})
}

// waitNoPods waits until neither the host nor any member has a pod in ns.
func waitNoPods(t *testing.T, ns string) {
	t.Helper()
	framework.Eventually(t, timeout, "no pods left in host and members", func(ctx context.Context) error {
		for _, c := range append([]*framework.Cluster{env.Host}, env.Members...) {
			pods, err := memberPods(ctx, c, ns)
			if err != nil {
				return err
			}
			if len(pods) > 0 {
				return fmt.Errorf("%s still has %d pods, e.g. %s", c.Name, len(pods), pods[0].Name)
			}
		}
		return nil
	})
}

func TestConfigMapsAndSecrets(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	const secretValue = "s3cr3t-value-never-in-a-spec"
	if _, err := env.Host.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"mode": "fast"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Host.Client.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"}, StringData: map[string]string{"password": secretValue}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := deployment(ns, "deps", 1, onMember("m1"), func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{
			{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
			{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
		}
		c := &s.Containers[0]
		c.Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}}}
		c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}},
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Optional: ptr.To(true)}}}
	})
	createDeployment(t, d)
	pods := waitRunning(t, ns, "deps", 1)
	m1 := env.Member(t, "m1")
	cm, err := m1.Client.CoreV1().ConfigMaps(ns).Get(t.Context(), "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["mode"] != "fast" || cm.Labels[api.LabelManagedBy] != api.ManagedByTether {
		t.Errorf("configmap copy %v labels %v", cm.Data, cm.Labels)
	}
	sec, err := m1.Client.CoreV1().Secrets(ns).Get(t.Context(), "creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["password"]) != secretValue || sec.Labels[api.LabelManagedBy] != api.ManagedByTether {
		t.Errorf("secret copy labels %v", sec.Labels)
	}
	mp, _, err := memberPodOf(t.Context(), &pods[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(mp)
	if strings.Contains(string(b), secretValue) {
		t.Error("the member pod spec contains the secret's value")
	}
	if _, err := m1.Client.CoreV1().Secrets(ns).Get(t.Context(), "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("optional missing secret: %v", err)
	}
}

func TestMissingRequiredConfigMap(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(ns, "waits", 1, onMember("m1"), func(s *corev1.PodSpec) {
		s.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}}}}
	}))
	waitEvent(t, ns, "", "MissingDependency", "configmap/later")
	pods, err := hostPods(t.Context(), ns, "waits")
	if err != nil || len(pods) != 1 || pods[0].Status.Phase != corev1.PodPending {
		t.Fatalf("host pod should be Pending: %v %v", err, pods)
	}
	if _, err := env.Host.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "later"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, ns, "waits", 1)
}

func TestCapacity(t *testing.T) {
	m := env.Member(t, "m2")
	nodeName := "tether-m2"
	// want computes the formula independently of tether-node: Σ allocatable of usable member nodes minus the
	// requests of member pods Tether did not create.
	want := func(ctx context.Context) (resource.Quantity, error) {
		nodes, err := m.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return resource.Quantity{}, err
		}
		cpu := resource.Quantity{}
		usable := map[string]bool{}
		for _, n := range nodes.Items {
			if n.Spec.Unschedulable || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Effect != corev1.TaintEffectPreferNoSchedule }) {
				continue
			}
			usable[n.Name] = true
			cpu.Add(n.Status.Allocatable[corev1.ResourceCPU])
		}
		pods, err := m.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return resource.Quantity{}, err
		}
		for _, p := range pods.Items {
			if !usable[p.Spec.NodeName] || p.Labels[api.LabelManagedBy] == api.ManagedByTether || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			for _, c := range p.Spec.Containers {
				cpu.Sub(c.Resources.Requests[corev1.ResourceCPU])
			}
		}
		return cpu, nil
	}
	check := func(what string) {
		t.Helper()
		framework.Eventually(t, timeout, what, func(ctx context.Context) error {
			w, err := want(ctx)
			if err != nil {
				return err
			}
			n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := n.Status.Allocatable[corev1.ResourceCPU]; got.Cmp(w) != 0 {
				return fmt.Errorf("allocatable cpu %s, want %s", got.String(), w.String())
			}
			return nil
		})
	}
	check("capacity equals the formula")

	// A pod Tether did not create lowers it.
	ns := m.Namespace(t, nil)
	if _, err := m.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "local:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("a member pod with requests lowers capacity")

	// Cordoning or tainting a member node lowers it; undoing restores it.
	patchNode := func(name, patch string) {
		t.Helper()
		if _, err := m.Client.CoreV1().Nodes().Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patchNode("m2-node-1", `{"spec":{"unschedulable":true}}`)
	check("cordoning a member node lowers capacity")
	patchNode("m2-node-2", `{"spec":{"taints":[{"key":"maintenance","effect":"NoSchedule"}]}}`)
	check("tainting a member node lowers capacity")
	patchNode("m2-node-1", `{"spec":{"unschedulable":false}}`)
	patchNode("m2-node-2", `{"spec":{"taints":null}}`)
	check("restored")

	// No drift: 200 pods through the virtual node and back.
	hostNS := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(hostNS, "churn", 200, onMember("m2"), func(s *corev1.PodSpec) {
		s.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}
	}))
	waitRunning(t, hostNS, "churn", 200)
	if err := env.Host.Client.AppsV1().Deployments(hostNS).Delete(t.Context(), "churn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNoPods(t, hostNS)
	check("capacity after 200 pods came and went")
}

func TestCordonHolds(t *testing.T) {
	nodes := env.Host.Client.CoreV1().Nodes()
	env.Host.MustKubectl(t, nil, "cordon", "tether-m1")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = nodes.Patch(ctx, "tether-m1", types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":false}}`), metav1.PatchOptions{})
	})
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(ns, "pinned", 1, onMember("m1")))
	framework.Eventually(t, timeout, "pod Pending and Unschedulable", func(ctx context.Context) error {
		pods, err := hostPods(ctx, ns, "pinned")
		if err != nil || len(pods) != 1 {
			return fmt.Errorf("pods %d: %v", len(pods), err)
		}
		for _, c := range pods[0].Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return nil
			}
		}
		return fmt.Errorf("pod %s: %v", pods[0].Name, pods[0].Status.Conditions)
	})
	// Watch a few status writes of tether-node go by: the cordon must outlive them.
	start, err := nodes.Get(t.Context(), "tether-m1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writes := 0
	framework.Eventually(t, timeout, "three node status writes by tether-node", func(ctx context.Context) error {
		n, err := nodes.Get(ctx, "tether-m1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !n.Spec.Unschedulable {
			t.Fatalf("tether-node undid the cordon")
		}
		if n.ResourceVersion != start.ResourceVersion {
			writes++
			start = n
		}
		if writes < 3 {
			return fmt.Errorf("%d writes so far", writes)
		}
		return nil
	})
}

func TestMemberPodDeletedIsReplaced(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(ns, "phoenix", 1, onMember("m1")))
	pods := waitRunning(t, ns, "phoenix", 1)
	old := pods[0]
	m1 := env.Member(t, "m1")
	if err := m1.Client.CoreV1().Pods(ns).Delete(t.Context(), old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "replacement Running, old host pod gone", func(ctx context.Context) error {
		pods, err := hostPods(ctx, ns, "phoenix")
		if err != nil {
			return err
		}
		for _, p := range pods {
			if p.UID == old.UID {
				return fmt.Errorf("old host pod %s still there (%s)", p.Name, p.Status.Phase)
			}
		}
		if len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
			return fmt.Errorf("%d pods, want one Running replacement", len(pods))
		}
		return nil
	})
}

func TestNameConflict(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1")
	if _, err := m1.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	local, err := m1.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "clash", Labels: map[string]string{"owner": "someone-else"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "theirs:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "clash"}, Spec: offloadedSpec(onMember("m1")),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "clash", "MemberNameConflict", "")
	after, err := m1.Client.CoreV1().Pods(ns).Get(t.Context(), "clash", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// kwok writes its status; Tether must not have touched it otherwise.
	if after.UID != local.UID || after.Labels[api.LabelManagedBy] != "" || after.Annotations[api.AnnotationHostUID] != "" ||
		after.Spec.Containers[0].Image != "theirs:1" {
		t.Errorf("the unowned member pod was touched: labels %v", after.Labels)
	}
	host, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), "clash", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if host.Status.Phase != corev1.PodPending {
		t.Errorf("host pod is %s, want Pending", host.Status.Phase)
	}
}

func TestRestartConverges(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(ns, "burst", 50))
	// Kill tether-node while it creates the pods.
	framework.Eventually(t, timeout, "some member pods created", func(ctx context.Context) error {
		n := 0
		for _, m := range env.Members {
			pods, err := memberPods(ctx, m, ns)
			if err != nil {
				return err
			}
			n += len(pods)
		}
		if n == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	env.StopProcess(t, sandbox.TetherNode, syscall.SIGKILL)
	env.StartProcess(t, sandbox.TetherNode)
	pods := waitRunning(t, ns, "burst", 50)
	waitOneCopyEach(t, ns, pods, timeout)
}

func TestMemberOutage(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	createDeployment(t, deployment(ns, "steady", 2, onMember("m1")))
	waitRunning(t, ns, "steady", 2)
	if err := env.State.PauseAPIServer("m2"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = env.State.ResumeAPIServer("m2")
		}
	})
	framework.Eventually(t, timeout, "tether-m2 NotReady with reason MemberUnreachable", func(ctx context.Context) error {
		n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, "tether-m2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionFalse && c.Reason == "MemberUnreachable" {
					return nil
				}
				return fmt.Errorf("Ready=%s %s", c.Status, c.Reason)
			}
		}
		return fmt.Errorf("no Ready condition")
	})
	// m1 keeps working: a new pod there runs.
	createDeployment(t, deployment(ns, "during", 1, onMember("m1")))
	waitRunning(t, ns, "during", 1)
	waitRunning(t, ns, "steady", 2)

	if err := env.State.ResumeAPIServer("m2"); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if err := env.State.WaitVirtualNodes(t.Context(), timeout); err != nil {
		t.Fatal(err)
	}
	createDeployment(t, deployment(ns, "after", 1, onMember("m2")))
	waitRunning(t, ns, "after", 1)
}

func TestMemberFromSecret(t *testing.T) {
	const ns, name = api.DefaultNamespace, "m1b"
	m1 := env.Member(t, "m1")
	kubeconfig, err := os.ReadFile(m1.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Host.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	secrets := env.Host.Client.CoreV1().Secrets(ns)
	if _, err := secrets.Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "member-" + name, Labels: map[string]string{api.LabelMember: name}},
		Data:       map[string][]byte{api.MemberSecretKubeconfig: kubeconfig},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "node tether-m1b Ready", func(ctx context.Context) error {
		n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, api.NodeName(api.DefaultNodePrefix, name), metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready")
	})
	// An invalid one: an event on the Secret, and the others go on.
	if _, err := secrets.Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "member-broken", Labels: map[string]string{api.LabelMember: "broken"}},
		Data:       map[string][]byte{api.MemberSecretKubeconfig: []byte("not a kubeconfig")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "member-broken", "InvalidMember", "")
	if err := secrets.Delete(t.Context(), "member-broken", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A hostile one: an exec credential plugin would run a program inside tether-node. It is refused, and the
	// program never runs.
	marker := filepath.Join(t.TempDir(), "ran")
	hostile := fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "touch %s"], interactiveMode: Never}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, marker)
	if _, err := secrets.Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "member-hostile", Labels: map[string]string{api.LabelMember: "hostile"}},
		Data:       map[string][]byte{api.MemberSecretKubeconfig: hostile},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "member-hostile", "InvalidMember", "exec credential plugin")
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exec plugin of a refused member Secret ran (stat %s: %v)", marker, err)
	}
	if _, err := env.Host.Client.CoreV1().Nodes().Get(t.Context(), api.NodeName(api.DefaultNodePrefix, "hostile"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node of a refused member: %v", err)
	}
	if err := secrets.Delete(t.Context(), "member-hostile", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := secrets.Delete(t.Context(), "member-"+name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, timeout, "node tether-m1b gone", func(ctx context.Context) error {
		_, err := env.Host.Client.CoreV1().Nodes().Get(ctx, api.NodeName(api.DefaultNodePrefix, name), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
}

func TestSchedulingAnnotation(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	pods := env.Host.Client.CoreV1().Pods(ns)
	parked := `{"nodeSelector":{"kubernetes.io/hostname":"m1-node-2"},"tolerations":[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]}`
	if _, err := pods.Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "parked", Annotations: map[string]string{api.AnnotationScheduling: parked}},
		Spec:       offloadedSpec(onMember("m1")),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m1 := env.Member(t, "m1")
	framework.Eventually(t, timeout, "member pod placed by the restored nodeSelector", func(ctx context.Context) error {
		mp, err := m1.Client.CoreV1().Pods(ns).Get(ctx, "parked", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mp.Spec.NodeSelector["kubernetes.io/hostname"] != "m1-node-2" || mp.Spec.NodeSelector[api.LabelMember] != "" {
			return fmt.Errorf("member nodeSelector %v", mp.Spec.NodeSelector)
		}
		if mp.Spec.NodeName != "m1-node-2" || mp.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("member pod on %q, %s", mp.Spec.NodeName, mp.Status.Phase)
		}
		return nil
	})

	if _, err := pods.Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "malformed", Annotations: map[string]string{api.AnnotationScheduling: `{"nodeSelector":`}},
		Spec:       offloadedSpec(onMember("m1")),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "malformed", "InvalidSchedulingAnnotation", "")
	framework.Eventually(t, timeout, "malformed pod Pending with the reason", func(ctx context.Context) error {
		p, err := pods.Get(ctx, "malformed", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodPending || p.Status.Reason != "InvalidSchedulingAnnotation" {
			return fmt.Errorf("host pod %s, reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	if _, err := m1.Client.CoreV1().Pods(ns).Get(t.Context(), "malformed", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a member pod was created for the malformed one: %v", err)
	}
}

// A host user who names a member's own ServiceAccount and Secret gets neither: the pod waits with an event, and
// the member's objects are left as they are. Pods in member namespaces Tether never uses wait too.
func TestMemberObjectsAreNotLent(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1")
	if _, err := m1.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	powerful, err := m1.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "powerful", Labels: map[string]string{"team": "member-admins"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := m1.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "member-only"}, Data: map[string][]byte{"password": []byte("member's own")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The host user's namesakes.
	if _, err := env.Host.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "powerful"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Host.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "member-only"},
		Data: map[string][]byte{"password": []byte("host user's")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	asSA := offloadedSpec(onMember("m1"), func(s *corev1.PodSpec) { s.ServiceAccountName = "powerful" })
	withSecret := offloadedSpec(onMember("m1"), func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "member-only"}}}}
	})
	for name, spec := range map[string]corev1.PodSpec{"as-sa": asSA, "with-secret": withSecret} {
		if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitEvent(t, ns, "as-sa", "MemberObjectConflict", "serviceaccount "+ns+"/powerful")
	waitEvent(t, ns, "with-secret", "MemberObjectConflict", "secret "+ns+"/member-only")
	for _, name := range []string{"as-sa", "with-secret"} {
		if _, err := m1.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("member pod %s exists (%v): it would run with the member's own objects", name, err)
		}
		if p, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodPending {
			t.Errorf("host pod %s: %v, %v; want Pending", name, p.Status.Phase, err)
		}
	}
	if sa, err := m1.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "powerful", metav1.GetOptions{}); err != nil || sa.ResourceVersion != powerful.ResourceVersion {
		t.Errorf("the member's ServiceAccount was touched: %v", err)
	}
	if s, err := m1.Client.CoreV1().Secrets(ns).Get(ctx, "member-only", metav1.GetOptions{}); err != nil || s.ResourceVersion != secret.ResourceVersion ||
		string(s.Data["password"]) != "member's own" {
		t.Errorf("the member's Secret was touched: %v", err)
	}

	// kube-system is never used in a member.
	sys, err := env.Host.Client.CoreV1().Pods(metav1.NamespaceSystem).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "offloaded-"}, Spec: offloadedSpec(onMember("m1"))}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Host.Client.CoreV1().Pods(metav1.NamespaceSystem).Delete(context.WithoutCancel(ctx), sys.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	})
	waitEvent(t, metav1.NamespaceSystem, sys.Name, "DeniedNamespace", "")
	if _, err := m1.Client.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, sys.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member pod in kube-system: %v", err)
	}
}
