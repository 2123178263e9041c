package join_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/test/e2e/framework"
)

const timeout = 2 * time.Minute

// byAddress are the member flags of m2 without a kubeconfig: its API address, a bearer token of an administrator
// and its CA.
type byAddress struct {
	server, token, caFile string
}

func (b byAddress) flags() []string {
	return []string{"--api-server", b.server, "--token", b.token, "--ca-file", b.caFile}
}

// adminToken makes, in member m, a ServiceAccount bound to cluster-admin and returns a token of it with the address
// and CA of m: the harness's kubeconfigs hold client certificates, and join by address takes a bearer token. The
// ServiceAccount goes when the test ends.
func adminToken(t *testing.T, m *framework.Cluster) byAddress {
	t.Helper()
	ctx := t.Context()
	const name = "e2e-join-admin"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem}}
	if _, err := m.Client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: name}}}
	if _, err := m.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Client.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = m.Client.CoreV1().ServiceAccounts(sa.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	})
	tr, err := m.Client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := m.Config.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(m.Config.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(t.TempDir(), m.Name+"-ca.crt")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return byAddress{server: m.Config.Host, token: tr.Status.Token, caFile: caFile}
}

// deployment runs one pod on member's virtual node, with the Secret "creds" mounted (its copy is one of the
// things leave must take away).
func deployment(ns, member string) *appsv1.Deployment {
	labels := map[string]string{"app": "on-" + member}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "on-" + member, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{api.LabelMember: member},
				Tolerations:  []corev1.Toleration{{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: api.TaintValue, Effect: corev1.TaintEffectNoSchedule}},
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
					VolumeMounts: []corev1.VolumeMount{{Name: "creds", MountPath: "/creds"}}}},
				Volumes: []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}},
			}},
		},
	}
}

// waitDeploymentRunning waits until the Deployment's pod runs on member's virtual node and its member pod runs.
func waitDeploymentRunning(t *testing.T, ns, member string) {
	t.Helper()
	m := env.Member(t, member)
	node := api.NodeName(api.DefaultNodePrefix, member)
	framework.Eventually(t, timeout, "the Deployment's pod running in "+member, func(ctx context.Context) error {
		pods, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=on-" + member})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning {
				continue
			}
			mp, err := m.Client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if mp.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("member pod %s: %s", mp.Name, mp.Status.Phase)
			}
			return nil
		}
		return fmt.Errorf("no pod of on-%s Running on %s among %d", member, node, len(pods.Items))
	})
}

func waitNodeReady(t *testing.T, member string) {
	t.Helper()
	node := api.NodeName(api.DefaultNodePrefix, member)
	framework.Eventually(t, timeout, "node "+node+" Ready", func(ctx context.Context) error {
		n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready: %v", node, n.Status.Conditions)
	})
}

// versions are the resource versions of the member identity in m and of its member Secret in the host.
func versions(t *testing.T, m *framework.Cluster) map[string]string {
	t.Helper()
	ctx := t.Context()
	out := map[string]string{}
	put := func(key string, o metav1.Object, err error) {
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		out[key] = o.GetResourceVersion()
	}
	ns, n := api.MemberNamespace, api.MemberIdentity
	o1, err := m.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	put("namespace", o1, err)
	o2, err := m.Client.CoreV1().ServiceAccounts(ns).Get(ctx, n, metav1.GetOptions{})
	put("serviceaccount", o2, err)
	o3, err := m.Client.CoreV1().Secrets(ns).Get(ctx, api.MemberTokenSecret, metav1.GetOptions{})
	put("token secret", o3, err)
	o4, err := m.Client.RbacV1().ClusterRoles().Get(ctx, n, metav1.GetOptions{})
	put("clusterrole", o4, err)
	o5, err := m.Client.RbacV1().ClusterRoleBindings().Get(ctx, n, metav1.GetOptions{})
	put("clusterrolebinding", o5, err)
	o6, err := env.Host.Client.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName(m.Name), metav1.GetOptions{})
	put("member secret", o6, err)
	return out
}

// can asks member m whether tether-node's identity there may do attrs.
func can(ctx context.Context, m *framework.Cluster, attrs authorizationv1.ResourceAttributes) (bool, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + api.MemberNamespace + ":" + api.MemberIdentity,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + api.MemberNamespace, "system:authenticated"},
		ResourceAttributes: &attrs,
	}}
	got, err := m.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return got.Status.Allowed, nil
}

// memberIdentityClient is a client of member as tether-node: from the member Secret join wrote.
func memberIdentityClient(t *testing.T, member string) kubernetes.Interface {
	t.Helper()
	s, err := env.Host.Client.CoreV1().Secrets(api.DefaultNamespace).Get(t.Context(), api.MemberSecretName(member), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data[api.MemberSecretKubeconfig])
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tetherLeft lists what of Tether is in member m: objects labelled managed-by=tether of any kind tether-node or
// join make, and the identity's names.
func tetherLeft(ctx context.Context, m *framework.Cluster) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{api.LabelManagedBy: api.ManagedByTether}).String()}
	var left []string
	var errs []error
	note := func(kind string, n int, err error) {
		if err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			left = append(left, fmt.Sprintf("%d %s", n, kind))
		}
	}
	c := m.Client
	nss, err := c.CoreV1().Namespaces().List(ctx, sel)
	note("namespaces", len(nss.Items), err)
	pods, err := c.CoreV1().Pods("").List(ctx, sel)
	note("pods", len(pods.Items), err)
	cms, err := c.CoreV1().ConfigMaps("").List(ctx, sel)
	note("configmaps", len(cms.Items), err)
	secrets, err := c.CoreV1().Secrets("").List(ctx, sel)
	note("secrets", len(secrets.Items), err)
	sas, err := c.CoreV1().ServiceAccounts("").List(ctx, sel)
	note("serviceaccounts", len(sas.Items), err)
	svcs, err := c.CoreV1().Services("").List(ctx, sel)
	note("services", len(svcs.Items), err)
	claims, err := c.CoreV1().PersistentVolumeClaims("").List(ctx, sel)
	note("persistentvolumeclaims", len(claims.Items), err)
	quotas, err := c.CoreV1().ResourceQuotas("").List(ctx, sel)
	note("resourcequotas", len(quotas.Items), err)
	roles, err := c.RbacV1().ClusterRoles().List(ctx, sel)
	note("clusterroles", len(roles.Items), err)
	bindings, err := c.RbacV1().ClusterRoleBindings().List(ctx, sel)
	note("clusterrolebindings", len(bindings.Items), err)
	if _, err := c.CoreV1().Namespaces().Get(ctx, api.MemberNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "namespace "+api.MemberNamespace)
	}
	if _, err := c.RbacV1().ClusterRoles().Get(ctx, api.MemberIdentity, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "clusterrole "+api.MemberIdentity)
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Get(ctx, api.MemberIdentity, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		left = append(left, "clusterrolebinding "+api.MemberIdentity)
	}
	return left, errors.Join(errs...)
}

// checkLeft fails the test unless nothing of Tether is left of member in the host and in the member.
func checkLeft(t *testing.T, member string) {
	t.Helper()
	ctx := t.Context()
	m := env.Member(t, member)
	left, err := tetherLeft(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("left in %s after leave: %s", member, strings.Join(left, ", "))
	}
	if _, err := env.Host.Client.CoreV1().Nodes().Get(ctx, api.NodeName(api.DefaultNodePrefix, member), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node of %s after leave: %v", member, err)
	}
	if _, err := env.Host.Client.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName(member), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member Secret of %s after leave: %v", member, err)
	}
}

// statusLine waits until `tetherctl status` shows member Ready and returns its fields.
func statusLine(t *testing.T, member string) []string {
	t.Helper()
	var fields []string
	framework.Eventually(t, timeout, "tetherctl status shows "+member+" Ready", func(context.Context) error {
		res := runTetherctl(t, "status", "--no-headers")
		if res.code != 0 {
			return fmt.Errorf("tetherctl status: exit %d: %s", res.code, res.stderr)
		}
		out := res.stdout
		for line := range strings.Lines(out) {
			f := strings.Fields(line)
			if len(f) > 0 && f[0] == member {
				fields = f
				if len(f) < 11 || f[2] != "True" || f[3] != api.ReasonMemberReady {
					return fmt.Errorf("status of %s: %q", member, line)
				}
				return nil
			}
		}
		return fmt.Errorf("no line for %s in:\n%s", member, out)
	})
	return fields
}

// TestJoinLeave is the life of two members: m1 joins with its kubeconfig, m2 with address, token and CA; both serve a
// Deployment; joining again changes nothing; a name cannot be taken by another cluster; the identity in a member is
// least privilege; status shows both; leave removes everything of Tether from the member.
func TestJoinLeave(t *testing.T) {
	m1, m2 := env.Member(t, "m1"), env.Member(t, "m2")
	m2Flags := adminToken(t, m2)
	// Whatever a failure leaves joined, the suite's restore has leave (then joins the harness's members again).
	ns := env.Host.Namespace(t, nil)

	join1 := mustTetherctl(t, "join", "m1", "--member-kubeconfig", m1.Kubeconfig)
	res := runTetherctl(t, append([]string{"join", "m2"}, m2Flags.flags()...)...)
	if res.code != 0 {
		t.Fatalf("join m2 by address: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if strings.Contains(res.stdout+res.stderr, m2Flags.token) {
		t.Error("tetherctl printed the token")
	}
	for _, want := range []string{"member m1: clusterrole/tether-node created", "host: secret/member-m1 created"} {
		if !strings.Contains(join1, want) {
			t.Errorf("join m1 does not say %q", want)
		}
	}

	t.Run("both members serve a Deployment", func(t *testing.T) {
		if _, err := env.Host.Client.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
			StringData: map[string]string{"password": "s3cret"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"m1", "m2"} {
			waitNodeReady(t, m)
			if _, err := env.Host.Client.AppsV1().Deployments(ns).Create(t.Context(), deployment(ns, m), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range []string{"m1", "m2"} {
			waitDeploymentRunning(t, ns, m)
		}
	})

	t.Run("joining again changes nothing", func(t *testing.T) {
		before := versions(t, m1)
		out := mustTetherctl(t, "join", "m1", "--member-kubeconfig", m1.Kubeconfig)
		if after := versions(t, m1); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("resource versions changed: %v → %v", before, after)
		}
		if strings.Contains(out, "created") || strings.Contains(out, "configured") || strings.Count(out, "unchanged") != 6 {
			t.Errorf("second join:\n%s", out)
		}
		before = versions(t, m2)
		mustTetherctl(t, append([]string{"join", "m2"}, m2Flags.flags()...)...)
		if after := versions(t, m2); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("m2: resource versions changed: %v → %v", before, after)
		}
	})

	t.Run("a name is not taken by another cluster", func(t *testing.T) {
		before := versions(t, m1)
		res := runTetherctl(t, "join", "m1", "--member-kubeconfig", m2.Kubeconfig)
		if res.code == 0 || !strings.Contains(res.stderr, "member name m1 is already used by another member cluster") {
			t.Errorf("join m2's cluster as m1: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		if after := versions(t, m1); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the refused join changed m1: %v → %v", before, after)
		}
	})

	t.Run("the member identity is least privilege", func(t *testing.T) {
		for _, c := range []struct {
			attrs authorizationv1.ResourceAttributes
			want  bool
		}{
			{authorizationv1.ResourceAttributes{Verb: "create", Group: rbacv1.GroupName, Resource: "clusterrolebindings"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: rbacv1.GroupName, Resource: "rolebindings", Namespace: "kube-system"}, false},
			{authorizationv1.ResourceAttributes{Verb: "escalate", Group: rbacv1.GroupName, Resource: "clusterroles"}, false},
			{authorizationv1.ResourceAttributes{Verb: "bind", Group: rbacv1.GroupName, Resource: "clusterroles"}, false},
			{authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "users"}, false},
			{authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "serviceaccounts", Namespace: "kube-system"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "nodes"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "nodes"}, false},
			{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Subresource: "status"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: "kube-system"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "eviction", Namespace: "kube-system"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "pods", Subresource: "status", Namespace: "default"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "namespaces"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "events", Namespace: "default"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: "default"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, false},
			// What tether-node needs.
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "default"}, true},
			{authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
			{authorizationv1.ResourceAttributes{Verb: "get", Resource: "pods", Subresource: "log", Namespace: "default"}, true},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "default"}, true},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "portforward", Namespace: "default"}, true},
			{authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}, true},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: "default"}, true},
		} {
			for _, m := range []*framework.Cluster{m1, m2} {
				got, err := can(t.Context(), m, c.attrs)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("%s: %s %s/%s/%s in %q: allowed %v, want %v", m.Name, c.attrs.Verb, c.attrs.Group, c.attrs.Resource,
						c.attrs.Subresource, c.attrs.Namespace, got, c.want)
				}
			}
		}
		// No Secret is readable, in any namespace, its own copies included: tether-node writes them and keeps a
		// record of what it wrote. Nor can it read one through a patch or a collection delete (their answers).
		for _, verb := range []string{"get", "list", "watch", "patch", "deletecollection"} {
			for _, ns := range []string{"kube-system", "default", ""} {
				for _, m := range []*framework.Cluster{m1, m2} {
					got, err := can(t.Context(), m, authorizationv1.ResourceAttributes{Verb: verb, Resource: "secrets", Namespace: ns})
					if err != nil {
						t.Fatal(err)
					}
					if got {
						t.Errorf("%s: tether-node's member identity may %s Secrets in %q", m.Name, verb, ns)
					}
				}
			}
		}

		// The same with the real token: it works for what tether-node does, and not beyond.
		c := memberIdentityClient(t, "m1")
		if _, err := c.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{Limit: 1}); err != nil {
			t.Errorf("list nodes as tether-node: %v", err)
		}
		for _, ns := range []string{"kube-system", ""} {
			if _, err := c.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
				t.Errorf("tether-node listed the Secrets of %q: %v", ns, err)
			}
		}
		dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-escalation"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: api.MemberNamespace, Name: api.MemberIdentity}}}
		if _, err := c.RbacV1().ClusterRoleBindings().Create(t.Context(), crb, dry); !apierrors.IsForbidden(err) {
			t.Errorf("tether-node bound itself to cluster-admin: %v", err)
		}
		nodes, err := m1.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{Limit: 1})
		if err != nil || len(nodes.Items) == 0 {
			t.Fatalf("m1 nodes: %v", err)
		}
		err = c.CoreV1().Nodes().Delete(t.Context(), nodes.Items[0].Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) {
			t.Errorf("tether-node may delete a member node: %v", err)
		}
	})

	t.Run("status shows both members Ready", func(t *testing.T) {
		for _, m := range []string{"m1", "m2"} {
			f := statusLine(t, m)
			// MEMBER NODE READY REASON PODS CPU MEMORY VERSION HEARTBEAT(2 fields) SECRET
			if f[1] != api.NodeName(api.DefaultNodePrefix, m) || !strings.HasPrefix(f[4], "1/") || !strings.HasPrefix(f[7], "v1.") ||
				f[len(f)-1] != api.MemberSecretName(m) {
				t.Errorf("status of %s: %q", m, f)
			}
		}
	})

	t.Run("leave m2 leaves nothing of Tether", func(t *testing.T) {
		out := mustTetherctl(t, append([]string{"leave", "m2"}, m2Flags.flags()...)...)
		if !strings.Contains(out, "member m2 left") {
			t.Errorf("leave m2:\n%s", out)
		}
		checkLeft(t, "m2")
		if _, err := m2.Client.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the namespace of the Deployment is still in m2: %v", err)
		}
		// m1 is untouched.
		waitDeploymentRunning(t, ns, "m1")
		statusLine(t, "m1")
	})

	t.Run("leave m1 by kubeconfig", func(t *testing.T) {
		mustTetherctl(t, "leave", "m1", "--member-kubeconfig", m1.Kubeconfig)
		checkLeft(t, "m1")
	})
}
