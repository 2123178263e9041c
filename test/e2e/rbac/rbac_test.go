// Package rbac_test proves the chart's roles by running, not by listing them. The harness runs every e2e suite's
// Tether processes as charts/tether runs them (framework.Env.Chart: its ServiceAccounts, roles and arguments) and
// its members joined with `tetherctl join`; this suite checks that the processes really are those identities,
// and that taking one rule away from a role breaks what the rule is for, until it is put back.
package rbac_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }

// timeout bounds each wait: generous, this is not a speed test.
const timeout = 2 * time.Minute

// kubeconfigOf is the --kubeconfig a running process of the harness was given.
func kubeconfigOf(t *testing.T, name string) string {
	t.Helper()
	p := env.State.Process(name)
	if p == nil {
		t.Fatalf("the harness runs no %s", name)
	}
	kc := ""
	for i, a := range p.Args {
		if a == "--kubeconfig" && i+1 < len(p.Args) {
			kc = p.Args[i+1]
		}
	}
	if kc == "" {
		t.Fatalf("%s runs without --kubeconfig", name)
	}
	return kc
}

// whoAmI is the user the apiserver of cfg's cluster sees.
func whoAmI(t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.UserInfo.Username
}

func clientOf(t *testing.T, kubeconfig []byte) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProcessesRunAsTheChartsIdentities: tether-node and tether-webhook authenticate to the host as the chart's
// ServiceAccounts, and tether-node to each member as the identity `tetherctl join` made there.
func TestProcessesRunAsTheChartsIdentities(t *testing.T) {
	for _, name := range []string{sandbox.TetherNode, sandbox.TetherWebhook} {
		raw, err := os.ReadFile(kubeconfigOf(t, name))
		if err != nil {
			t.Fatal(err)
		}
		want := "system:serviceaccount:" + sandbox.TetherNamespace + ":" + name
		if got := whoAmI(t, clientOf(t, raw)); got != want {
			t.Errorf("%s is %s in the host, want %s", name, got, want)
		}
	}
	for _, m := range env.Members {
		s, err := env.Host.Client.CoreV1().Secrets(api.DefaultNamespace).Get(t.Context(), api.MemberSecretName(m.Name), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("member Secret of %s (tetherctl join): %v", m.Name, err)
		}
		want := "system:serviceaccount:" + api.MemberNamespace + ":" + api.MemberIdentity
		if got := whoAmI(t, clientOf(t, s.Data[api.MemberSecretKubeconfig])); got != want {
			t.Errorf("tether-node is %s in %s, want %s", got, m.Name, want)
		}
	}
	// And the chart's arguments, not the harness's: members come from Secrets only.
	p := env.State.Process(sandbox.TetherNode)
	for _, want := range []string{"--member-secrets=true", "--namespace=" + sandbox.TetherNamespace} {
		if !slices.Contains(p.Args, want) {
			t.Errorf("tether-node runs without the chart's %s: %v", want, p.Args)
		}
	}
	if slices.Contains(p.Args, "--member") {
		t.Errorf("tether-node runs with --member flags: %v", p.Args)
	}
}

// withoutRule takes the rules that grant resource away from ClusterRole name in c until the test ends (or until
// the returned function puts them back), and returns them.
func withoutRule(t *testing.T, c kubernetes.Interface, name, resource string) (restore func()) {
	t.Helper()
	roles := c.RbacV1().ClusterRoles()
	cr, err := roles.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	original := slices.Clone(cr.Rules)
	cr.Rules = slices.DeleteFunc(cr.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, resource) })
	if len(cr.Rules) != len(original)-1 {
		t.Fatalf("ClusterRole %s: %d rules grant %s, want exactly one", name, len(original)-len(cr.Rules), resource)
	}
	if _, err := roles.Update(t.Context(), cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cr, err := roles.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			cr.Rules = original
			_, err = roles.Update(ctx, cr, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("put the rules of ClusterRole %s back: %v", name, err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// waitLog waits until a line of process name's log has every part.
func waitLog(t *testing.T, name string, parts ...string) {
	t.Helper()
	framework.Eventually(t, timeout, fmt.Sprintf("%s logs %q", name, parts), func(context.Context) error {
		ok, err := env.ProcessLogHas(name, parts...)
		if err != nil || ok {
			return err
		}
		return fmt.Errorf("not in %s", env.State.Process(name).Log)
	})
}

// offloaded creates a pod on member m1 through the host.
func offloaded(t *testing.T, ns, name string) {
	t.Helper()
	_, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{api.LabelMember: "m1"},
			Tolerations:  []corev1.Toleration{{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: api.TaintValue, Effect: corev1.TaintEffectNoSchedule}},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHostRuleRemoved: without the rule on pods/status of its host ClusterRole, tether-node runs the member pod but
// cannot say so in the host (forbidden); with the rule back, the host pod turns Running.
func TestHostRuleRemoved(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	restore := withoutRule(t, env.Host.Client, "tether-node", "pods/status")
	offloaded(t, ns, "silent")
	m1 := env.Member(t, "m1")
	framework.Eventually(t, timeout, "member pod Running", func(ctx context.Context) error {
		pods, err := m1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 || pods.Items[0].Status.Phase != corev1.PodRunning {
			return fmt.Errorf("%d member pods", len(pods.Items))
		}
		return nil
	})
	waitLog(t, sandbox.TetherNode, "forbidden", `pods/status`, "silent")
	hp, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), "silent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hp.Status.Phase == corev1.PodRunning {
		t.Fatalf("host pod Running without the rule on pods/status")
	}
	restore()
	env.RunningIn(t, ns, "silent", "m1")
}

// TestMemberRuleRemoved: without the rule on pods/exec of tether-node's ClusterRole in the member (what `tetherctl
// join` made), `kubectl exec` through the host fails; with the rule back, it works.
func TestMemberRuleRemoved(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	offloaded(t, ns, "shell")
	env.RunningIn(t, ns, "shell", "m1")
	restore := withoutRule(t, env.Member(t, "m1").Client, api.MemberIdentity, "pods/exec")
	ctx, cancel := context.WithTimeout(t.Context(), framework.KubectlTimeout)
	defer cancel()
	res, err := env.Host.Kubectl(ctx, nil, "exec", "-n", ns, "shell", "--", "echo", "in")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 || res.Stdout == "in\n" {
		t.Fatalf("kubectl exec without the member's rule on pods/exec: exit %d, stdout %q", res.ExitCode, res.Stdout)
	}
	t.Logf("kubectl exec without the rule: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr))
	restore()
	// RBAC changes apply at once; the next exec works.
	framework.Eventually(t, timeout, "exec works again", func(ctx context.Context) error {
		res, err := env.Host.Kubectl(ctx, nil, "exec", "-n", ns, "shell", "--", "echo", "in")
		if err != nil {
			return err
		}
		if res.ExitCode != 0 || res.Stdout != "in\n" {
			return fmt.Errorf("exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		return nil
	})
}

// TestWebhookRuleRemoved: without the rule that lets tether-webhook read and update its own
// MutatingWebhookConfiguration, a restarted webhook cannot keep it (forbidden) and is not ready; with the rule back,
// it is, and the host calls it again.
func TestWebhookRuleRemoved(t *testing.T) {
	roles := env.Host.Client.RbacV1().ClusterRoles()
	cr, err := roles.Get(t.Context(), "tether-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	original := slices.Clone(cr.Rules)
	// The rule limited to the configuration's name (get, update); create stays.
	cr.Rules = slices.DeleteFunc(cr.Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "mutatingwebhookconfigurations") && len(r.ResourceNames) > 0
	})
	if len(cr.Rules) != len(original)-1 {
		t.Fatalf("ClusterRole tether-webhook: no rule on its own configuration by name: %+v", original)
	}
	if _, err := roles.Update(t.Context(), cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	putBack := func() error {
		cr, err := roles.Get(context.Background(), "tether-webhook", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cr.Rules = original
		_, err = roles.Update(context.Background(), cr, metav1.UpdateOptions{})
		return err
	}
	restarted := false
	t.Cleanup(func() {
		if err := putBack(); err != nil {
			t.Errorf("put the webhook's rules back: %v", err)
		}
		if restarted {
			_ = env.State.StopProcess(sandbox.TetherWebhook, syscall.SIGTERM)
			if err := env.State.RestartProcess(sandbox.TetherWebhook); err != nil {
				t.Error(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := env.State.WaitWebhook(ctx, framework.WebhookNamespace, timeout); err != nil {
				t.Error(err)
			}
		}
	})
	env.StopProcess(t, sandbox.TetherWebhook, syscall.SIGTERM)
	if err := env.State.RestartProcess(sandbox.TetherWebhook); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitLog(t, sandbox.TetherWebhook, "forbidden", "mutatingwebhookconfigurations")
	if err := putBack(); err != nil {
		t.Fatal(err)
	}
	_ = env.State.StopProcess(sandbox.TetherWebhook, syscall.SIGTERM)
	env.StartProcess(t, sandbox.TetherWebhook)
	if err := env.State.WaitWebhook(t.Context(), framework.WebhookNamespace, timeout); err != nil {
		t.Fatal(err)
	}
}
