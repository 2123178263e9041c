package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/api"
)

func newTestLeaver(name string, host, member kubernetes.Interface, ep endpoint) (*leaver, *bytes.Buffer) {
	var out bytes.Buffer
	return &leaver{name: name, host: host, member: member, endpoint: ep, clusterID: testClusterID,
		namespace: api.DefaultNamespace, nodePrefix: api.DefaultNodePrefix, timeout: 300 * time.Millisecond,
		poll: 10 * time.Millisecond, out: &out}, &out
}

// joined is a host and a member after `join m1`.
func joined(t *testing.T) (host, member *fake.Clientset) {
	t.Helper()
	host, member = hostCluster(), memberWithTokenController()
	j, _ := newTestJoiner("m1", host, member, epM1)
	if err := j.run(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return host, member
}

// identityLeft lists the objects of the member identity that are still in the member.
func identityLeft(t *testing.T, member kubernetes.Interface) []string {
	t.Helper()
	var left []string
	for _, obj := range identity(member) {
		_, err := obj.get(t.Context())
		switch {
		case err == nil:
			left = append(left, obj.kind)
		case !apierrors.IsNotFound(err):
			t.Fatal(err)
		}
	}
	return left
}

func TestLeaveRemovesEverything(t *testing.T) {
	host, member := joined(t)
	l, out := newTestLeaver("m1", host, member, epM1)
	if err := l.run(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(t.Context(), api.MemberSecretName("m1"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member Secret: %v", err)
	}
	if left := identityLeft(t, member); len(left) > 0 {
		t.Errorf("left in the member: %v", left)
	}
	for _, want := range []string{"host: secret/member-m1 deleted", "member m1: clusterrolebinding/tether-node deleted",
		"member m1: namespace/tether-system deleted", "member m1 left"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	// Leaving again is fine.
	l, _ = newTestLeaver("m1", host, member, epM1)
	if err := l.run(testContext(t)); err != nil {
		t.Errorf("second leave: %v", err)
	}
}

// Leave waits for tether-node: while its node or its objects are in place, the identity stays (tether-node still
// needs it), unless --force.
func TestLeaveWaitsForTetherNode(t *testing.T) {
	owner := api.Owner{ClusterID: testClusterID, NodeName: "tether-m1"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: owner.Labels()}}
	for _, force := range []bool{false, true} {
		host, member := joined(t)
		if _, err := host.CoreV1().Nodes().Create(t.Context(), virtualNode("m1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := member.CoreV1().Pods("shop").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		l, out := newTestLeaver("m1", host, member, epM1)
		l.force = force
		err := l.run(testContext(t))
		left := identityLeft(t, member)
		if !force {
			if err == nil || !strings.Contains(err.Error(), "host: node/tether-m1, member: pod/shop/web-1") || !strings.Contains(err.Error(), "--force") {
				t.Errorf("error %v", err)
			}
			if len(left) != 5 {
				t.Errorf("identity left %v, want all of it", left)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--force: %v", err)
		}
		if len(left) != 0 {
			t.Errorf("--force: identity left %v", left)
		}
		if !strings.Contains(out.String(), "warning: tether-node did not finish") {
			t.Errorf("--force output:\n%s", out)
		}
	}
}

func TestLeaveRefuses(t *testing.T) {
	t.Run("another cluster", func(t *testing.T) {
		host, member := joined(t)
		l, _ := newTestLeaver("m1", host, member, epM2)
		if err := l.run(testContext(t)); err == nil || !strings.Contains(err.Error(), "member m1 is the cluster at https://m1.example:6443") {
			t.Fatalf("error %v", err)
		}
		if _, err := host.CoreV1().Secrets(api.DefaultNamespace).Get(t.Context(), api.MemberSecretName("m1"), metav1.GetOptions{}); err != nil {
			t.Errorf("member Secret gone: %v", err)
		}
	})
	t.Run("hand-written member Secret", func(t *testing.T) {
		host, member := hostCluster(memberSecret(t, "by-hand", "m1", epM1, false)), memberWithTokenController()
		l, _ := newTestLeaver("m1", host, member, epM1)
		if err := l.run(testContext(t)); err == nil || !strings.Contains(err.Error(), "which tetherctl did not write") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("flag member", func(t *testing.T) {
		host, member := hostCluster(virtualNode("m1")), memberWithTokenController()
		l, _ := newTestLeaver("m1", host, member, epM1)
		if err := l.run(testContext(t)); err == nil || !strings.Contains(err.Error(), "not served from a member Secret") {
			t.Fatalf("error %v", err)
		}
	})
}

// Leave deletes only what this host's join made: unowned objects and another host's stay.
func TestLeaveKeepsWhatIsNotOurs(t *testing.T) {
	host := hostCluster()
	member := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: api.MemberNamespace}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: api.MemberIdentity, Labels: api.JoinLabels("other-host")}},
	)
	l, out := newTestLeaver("m1", host, member, epM1)
	if err := l.run(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if left := identityLeft(t, member); len(left) != 2 {
		t.Errorf("left %v, want the namespace and the cluster role", left)
	}
	for _, want := range []string{"namespace/tether-system left alone", "clusterrole/tether-node left alone"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}
