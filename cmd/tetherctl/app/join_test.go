package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/registry"
)

func newTestJoiner(name string, host, member kubernetes.Interface, ep endpoint) (*joiner, *bytes.Buffer) {
	var out bytes.Buffer
	return &joiner{name: name, host: host, member: member, endpoint: ep, clusterID: testClusterID,
		namespace: api.DefaultNamespace, nodePrefix: api.DefaultNodePrefix, timeout: 2 * time.Second,
		poll: 10 * time.Millisecond, out: &out}, &out
}

func TestJoinCreatesIdentityAndMemberSecret(t *testing.T) {
	host, member := hostCluster(), memberWithTokenController()
	j, out := newTestJoiner("m1", host, member, epM1)
	ctx := testContext(t)
	if err := j.run(ctx); err != nil {
		t.Fatal(err)
	}
	labels := api.JoinLabels(testClusterID)

	ns, err := member.CoreV1().Namespaces().Get(ctx, api.MemberNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(labels, ns.Labels); diff != "" {
		t.Errorf("namespace labels (-want +got):\n%s", diff)
	}
	sa, err := member.CoreV1().ServiceAccounts(api.MemberNamespace).Get(ctx, api.MemberIdentity, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !api.JoinedBy(sa, testClusterID) || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("service account %+v", sa.ObjectMeta)
	}
	token, err := member.CoreV1().Secrets(api.MemberNamespace).Get(ctx, api.MemberTokenSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if token.Type != corev1.SecretTypeServiceAccountToken || token.Annotations[corev1.ServiceAccountNameKey] != api.MemberIdentity || !api.JoinedBy(token, testClusterID) {
		t.Errorf("token Secret: type %s, annotations %v, labels %v", token.Type, token.Annotations, token.Labels)
	}
	role, err := member.RbacV1().ClusterRoles().Get(ctx, api.MemberIdentity, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(api.MemberRules(), role.Rules); diff != "" || !api.JoinedBy(role, testClusterID) {
		t.Errorf("cluster role rules (-want +got):\n%s", diff)
	}
	binding, err := member.RbacV1().ClusterRoleBindings().Get(ctx, api.MemberIdentity, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: api.MemberIdentity}
	wantSubjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: api.MemberNamespace, Name: api.MemberIdentity}}
	if diff := cmp.Diff(wantRef, binding.RoleRef); diff != "" {
		t.Errorf("role ref (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSubjects, binding.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}

	s, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName("m1"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if api.MemberOfSecret(s) != "m1" || s.Labels[api.LabelManagedBy] != api.ManagedByTether || len(s.Data) != 1 {
		t.Errorf("member Secret labels %v, keys %d", s.Labels, len(s.Data))
	}
	cfg, err := registry.ParseMemberKubeconfig(s.Data[api.MemberSecretKubeconfig])
	if err != nil {
		t.Fatalf("tether-node would refuse the member Secret: %v", err)
	}
	// The CA the operator trusts wins over the one in the token Secret.
	if cfg.Host != epM1.Server || cfg.BearerToken != "tok" || !bytes.Equal(cfg.CAData, epM1.CA) {
		t.Errorf("member kubeconfig: server %s, token %q, CA %q", cfg.Host, cfg.BearerToken, cfg.CAData)
	}
	for _, want := range []string{"member m1: namespace/tether-system created", "member m1: clusterrolebinding/tether-node created",
		"host: secret/member-m1 created", "member m1 joined"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out.String(), "tok\n") || strings.Contains(out.String(), "tok ") {
		t.Errorf("output shows the token:\n%s", out)
	}
}

// Without a CA in the member flags, the member Secret gets the one of the token Secret.
func TestJoinTakesTheTokenSecretsCA(t *testing.T) {
	host, member := hostCluster(), memberWithTokenController()
	j, _ := newTestJoiner("m1", host, member, endpoint{Server: epM1.Server})
	ctx := testContext(t)
	if err := j.run(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName("m1"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := registry.ParseMemberKubeconfig(s.Data[api.MemberSecretKubeconfig])
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.CAData) != "CA-FROM-SECRET" {
		t.Errorf("CA %q", cfg.CAData)
	}
}

// --kubelet-port goes on the member Secret as tether-node's annotation, which tether-node accepts.
func TestJoinKubeletPort(t *testing.T) {
	host, member := hostCluster(), memberWithTokenController()
	ctx := testContext(t)
	j, _ := newTestJoiner("m2", host, member, epM1)
	j.kubeletPort = 10251
	if err := j.run(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName("m2"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Annotations[api.AnnotationKubeletPort]; got != "10251" {
		t.Errorf("annotation %s = %q, want 10251", api.AnnotationKubeletPort, got)
	}
	if p, err := registry.ParsePort(s.Annotations[api.AnnotationKubeletPort]); err != nil || p != 10251 {
		t.Errorf("tether-node reads port %d, %v", p, err)
	}
}

func TestJoinKubeletPortRange(t *testing.T) {
	for _, p := range []int{-1, 65536} {
		o := joinOptions{kubeletPort: p}
		if _, err := o.joiner(testContext(t), "m1", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--kubelet-port") {
			t.Errorf("--kubelet-port %d: %v", p, err)
		}
	}
}

// Joining twice leaves every object as it was (the fake bumps resource versions on every apply, so the objects
// themselves are compared), and says so.
func TestJoinIsIdempotent(t *testing.T) {
	host, member := hostCluster(), memberWithTokenController()
	ctx := testContext(t)
	j, _ := newTestJoiner("m1", host, member, epM1)
	if err := j.run(ctx); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, host, member)
	j, out := newTestJoiner("m1", host, member, epM1)
	if err := j.run(ctx); err != nil {
		t.Fatalf("second join: %v", err)
	}
	if diff := cmp.Diff(before, snapshot(t, host, member)); diff != "" {
		t.Errorf("the second join changed objects (-before +after):\n%s", diff)
	}
	if strings.Contains(out.String(), "created") {
		t.Errorf("the second join created something:\n%s", out)
	}
}

// snapshot is every object join writes, without what a write changes by itself.
func snapshot(t *testing.T, host, member kubernetes.Interface) []runtime.Object {
	t.Helper()
	ctx := t.Context()
	var objs []runtime.Object
	add := func(o runtime.Object, err error) {
		if err != nil {
			t.Fatal(err)
		}
		o = o.DeepCopyObject()
		m := o.(metav1.Object)
		m.SetResourceVersion("")
		m.SetManagedFields(nil)
		objs = append(objs, o)
	}
	ns, n := api.MemberNamespace, api.MemberIdentity
	add(member.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}))
	add(member.CoreV1().ServiceAccounts(ns).Get(ctx, n, metav1.GetOptions{}))
	add(member.CoreV1().Secrets(ns).Get(ctx, api.MemberTokenSecret, metav1.GetOptions{}))
	add(member.RbacV1().ClusterRoles().Get(ctx, n, metav1.GetOptions{}))
	add(member.RbacV1().ClusterRoleBindings().Get(ctx, n, metav1.GetOptions{}))
	add(host.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName("m1"), metav1.GetOptions{}))
	return objs
}

func TestJoinRefuses(t *testing.T) {
	unowned := func(o metav1.Object) metav1.Object { return o }
	otherHost := func(o metav1.Object) metav1.Object { o.SetLabels(api.JoinLabels("other-host")); return o }
	for _, c := range []struct {
		name   string
		host   func(t *testing.T) []runtime.Object
		member []runtime.Object
		want   []string
	}{
		{
			name: "the name of another member cluster",
			host: func(t *testing.T) []runtime.Object {
				return []runtime.Object{memberSecret(t, api.MemberSecretName("m1"), "m1", epM2, true), virtualNode("m1")}
			},
			want: []string{"member name m1 is already used by another member cluster (server https://m2.example:6443"},
		},
		{
			name: "the name of a hand-written member Secret of another cluster",
			host: func(t *testing.T) []runtime.Object {
				return []runtime.Object{memberSecret(t, "by-hand", "m1", epM2, false)}
			},
			want: []string{"member name m1 is already used by another member cluster", "by-hand"},
		},
		{
			name: "a member registered by hand",
			host: func(t *testing.T) []runtime.Object {
				return []runtime.Object{memberSecret(t, "by-hand", "m1", epM1, false)}
			},
			want: []string{"registered by Secret tether-system/by-hand, which tetherctl did not write"},
		},
		{
			name: "a cluster that is already a member",
			host: func(t *testing.T) []runtime.Object {
				return []runtime.Object{memberSecret(t, api.MemberSecretName("east"), "east", epM1, true)}
			},
			want: []string{"is already member east"},
		},
		{
			name: "a virtual node no member Secret registers",
			host: func(*testing.T) []runtime.Object { return []runtime.Object{virtualNode("m1")} },
			want: []string{"node tether-m1 exists but no member Secret registers m1"},
		},
		{
			name: "unowned member objects",
			host: func(*testing.T) []runtime.Object { return nil },
			member: []runtime.Object{
				unowned(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: api.MemberNamespace}}).(runtime.Object),
				&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: api.MemberIdentity, Labels: api.ManagedLabels()}},
			},
			want: []string{"namespace tether-system exists and is not Tether's", "clusterrole tether-node exists and is not Tether's"},
		},
		{
			name: "the identity of another host",
			host: func(*testing.T) []runtime.Object { return nil },
			member: []runtime.Object{
				otherHost(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: api.MemberIdentity, Namespace: api.MemberNamespace}}).(runtime.Object),
			},
			want: []string{"serviceaccount tether-node was created by the join of another host cluster (other-host)"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			host, member := hostCluster(c.host(t)...), memberWithTokenController(c.member...)
			j, _ := newTestJoiner("m1", host, member, epM1)
			ctx := testContext(t)
			err := j.run(ctx)
			if err == nil {
				t.Fatal("joined")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Refused before anything was written.
			if _, err := member.RbacV1().ClusterRoleBindings().Get(ctx, api.MemberIdentity, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("binding in the member: %v", err)
			}
			if s, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName("m1"), metav1.GetOptions{}); err == nil && s.UID != "secret-uid" {
				t.Errorf("a member Secret was written")
			}
		})
	}
}

// A member whose token controller never fills the token fails the join with a clear error, and the host gets no
// member Secret.
func TestJoinWithoutTokenController(t *testing.T) {
	host, member := hostCluster(), fake.NewClientset()
	j, _ := newTestJoiner("m1", host, member, epM1)
	j.timeout = 100 * time.Millisecond
	err := j.run(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "has no token after") {
		t.Fatalf("error %v", err)
	}
	if _, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(t.Context(), api.MemberSecretName("m1"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member Secret: %v", err)
	}
}

// --wait waits for the virtual node to be Ready, and says when it is not.
func TestJoinWait(t *testing.T) {
	node := virtualNode("m1")
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}
	host, member := hostCluster(), memberWithTokenController()
	j, _ := newTestJoiner("m1", host, member, epM1)
	j.wait, j.timeout = true, 200*time.Millisecond
	if err := j.run(testContext(t)); err == nil || !strings.Contains(err.Error(), "node tether-m1 not registered yet") {
		t.Fatalf("error %v", err)
	}
	node.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := host.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j, out := newTestJoiner("m1", host, member, epM1)
	j.wait = true
	if err := j.run(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "node tether-m1 is Ready") {
		t.Errorf("output:\n%s", out)
	}
}
