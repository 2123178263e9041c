// Package kubelet_test drives the virtual nodes' kubelet API with the real kubectl against the host: logs, exec,
// attach and port-forward of pods that run in members, and the API's authentication and authorization.
package kubelet_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }

// runningPod creates a pod on member m1 through the host and waits until it runs.
func runningPod(t *testing.T) (ns, name string) {
	t.Helper()
	ns = env.Host.Namespace(t, nil)
	name = "talk"
	_, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{api.LabelMember: "m1"},
			Tolerations:  []corev1.Toleration{{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: api.TaintValue, Effect: corev1.TaintEffectNoSchedule}},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}, {Name: "side", Image: "registry.example/side:1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.RunningIn(t, ns, name, "m1")
	return ns, name
}

func TestLogs(t *testing.T) {
	ns, pod := runningPod(t)
	all := strings.Join(sandbox.LogLines, "\n") + "\n"
	last := sandbox.LogLines[len(sandbox.LogLines)-1] + "\n"
	for _, tt := range []struct {
		name string
		args []string
		want func(string) error
	}{
		{"plain", nil, equal(all)},
		{"container", []string{"-c", "side"}, equal(all)},
		{"tail", []string{"--tail", "1"}, equal(last)},
		{"since drops lines hours old", []string{"--since", "30m"}, equal(strings.Join(sandbox.LogLines[2:], "\n") + "\n")},
		{"since-time", []string{"--since-time", time.Now().Add(-90 * time.Minute).UTC().Format(time.RFC3339)}, equal(strings.Join(sandbox.LogLines[1:], "\n") + "\n")},
		{"timestamps", []string{"--tail", "1", "--timestamps"}, func(s string) error {
			if !strings.HasSuffix(s, " "+last) || !strings.HasPrefix(s, "20") {
				return fmt.Errorf("%q has no timestamp", s)
			}
			return nil
		}},
		{"limit-bytes", []string{"--limit-bytes", "7"}, equal(all[:7])},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := env.Host.MustKubectl(t, nil, append([]string{"logs", "-n", ns, pod, "-c", "app"}, tt.args...)...)
			if err := tt.want(got); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("previous without one", func(t *testing.T) {
		res, err := env.Host.Kubectl(t.Context(), nil, "logs", "-n", ns, pod, "-c", "app", "--previous")
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || res.Stderr == "" {
			t.Errorf("kubectl logs --previous: exit %d, stderr %q: want a clear error", res.ExitCode, res.Stderr)
		}
	})
	t.Run("follow ends when cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cmd := exec.CommandContext(ctx, env.State.Kubectl, "--kubeconfig", env.Host.Kubeconfig, "logs", "-f", "-n", ns, pod, "-c", "app")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != sandbox.LogLines[0]+"\n" {
			t.Errorf("first followed line %q: %v", line, err)
		}
		cancel()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Logf("kubectl logs -f ended after cancel: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("kubectl logs -f did not end after cancel")
		}
	})
}

func equal(want string) func(string) error {
	return func(got string) error {
		if got != want {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	}
}

func TestExec(t *testing.T) {
	ns, pod := runningPod(t)
	if got := env.Host.MustKubectl(t, nil, "exec", "-n", ns, pod, "-c", "app", "--", "echo", "through", "the", "host"); got != "through the host\n" {
		t.Errorf("exec printed %q", got)
	}
	if got := env.Host.MustKubectl(t, strings.NewReader("piped\n"), "exec", "-i", "-n", ns, pod, "-c", "app", "--", "head", "-n", "1"); got != "piped\n" {
		t.Errorf("exec -i printed %q", got)
	}
	res, err := env.Host.Kubectl(t.Context(), nil, "exec", "-n", ns, pod, "-c", "app", "--", "sh", "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 {
		t.Error("a failing command came back as success")
	}
}

func TestAttach(t *testing.T) {
	ns, pod := runningPod(t)
	out := env.Host.StartKubectl(t, "attach", "-n", ns, pod, "-c", "app")
	lines := make(chan string, 1)
	go func() {
		line, _ := out.ReadString('\n')
		lines <- line
	}()
	// kwok streams what is written to the attach file while attached: write until a line comes through.
	want := "attached through the host"
	framework.Eventually(t, 20*time.Second, "a line written to the container comes through attach", func(context.Context) error {
		if err := env.State.AppendAttachLine(want); err != nil {
			return err
		}
		select {
		case line := <-lines:
			if line != want+"\n" {
				t.Fatalf("attach printed %q, want %q", line, want)
			}
			return nil
		case <-time.After(time.Second):
			return fmt.Errorf("nothing yet")
		}
	})
}

// TestPortForward forwards two ports of a member pod with kubectl against the host. kwok sends every forwarded port
// of a member pod to the suite's echo server, so the bytes cross host apiserver, Tether, member apiserver and kwok
// to a real socket and back.
func TestPortForward(t *testing.T) {
	ns, pod := runningPod(t)
	out := env.Host.StartKubectl(t, "port-forward", "-n", ns, pod, ":8080", ":9090")
	var addrs []string
	for range 2 {
		// "Forwarding from 127.0.0.1:PORT -> 8080"
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("port-forward: %v", err)
		}
		addrs = append(addrs, strings.Fields(line)[2])
	}
	var before int64
	if env.Echo != nil {
		before = env.Echo.Received()
	}
	sent := 0
	for i, addr := range addrs {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		msg := fmt.Sprintf("ping %d through two clusters\n", i)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || got != msg {
			t.Errorf("port %s: echo %q: %v", addr, got, err)
		}
		sent += len(msg)
		conn.Close()
	}
	if env.Echo != nil {
		if got := env.Echo.Received() - before; got != int64(sent) {
			t.Errorf("the echo server received %d bytes, want the %d sent through the forwarded ports", got, sent)
		}
	}
}

func TestAuthentication(t *testing.T) {
	ns, pod := runningPod(t)
	node, err := env.Host.Client.CoreV1().Nodes().Get(t.Context(), "tether-m1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("https://127.0.0.1:%d", node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed in the harness
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	logs := fmt.Sprintf("/containerLogs/%s/%s/app?tailLines=1", ns, pod)
	if code, _ := get(logs, ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	token := func(sa string) string {
		t.Helper()
		if _, err := env.Host.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(env.Host.MustKubectl(t, nil, "create", "token", "-n", ns, sa))
	}
	if code, _ := get(logs, token("nobody")); code != http.StatusForbidden {
		t.Errorf("token without nodes/proxy: %d, want 403", code)
	}
	admin := token("reader")
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-kubelet-api-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}},
	}
	b, err := env.Host.Client.RbacV1().ClusterRoleBindings().Create(t.Context(), binding, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Host.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), b.Name, metav1.DeleteOptions{})
	})
	if code, body := get(logs, admin); code != http.StatusOK || body != sandbox.LogLines[len(sandbox.LogLines)-1]+"\n" {
		t.Errorf("token with nodes/proxy: %d %q, want 200 and the last line", code, body)
	}
	if code, body := get(fmt.Sprintf("/containerLogs/%s/no-such-pod/app", ns), admin); code != http.StatusNotFound || !strings.Contains(body, "no-such-pod") {
		t.Errorf("unknown pod: %d %q, want 404 naming it", code, body)
	}
}

// A host pod whose member pod of the same name is not Tether's (it waits with MemberNameConflict) gives its user no
// way into that member pod: exec, logs and port-forward through the host are refused, and nothing runs there.
func TestNoWayIntoUnownedMemberPods(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1")
	if _, err := m1.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}
	if _, err := m1.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "victim"}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*time.Minute, "the member's own pod Running", func(ctx context.Context) error {
		p, err := m1.Client.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	hostSpec := spec
	hostSpec.NodeSelector = map[string]string{api.LabelMember: "m1"}
	hostSpec.Tolerations = api.Tolerations(300)[:1]
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "victim"}, Spec: hostSpec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*time.Minute, "host pod bound to tether-m1", func(ctx context.Context) error {
		p, err := env.Host.Client.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.NodeName == "" {
			return fmt.Errorf("not bound")
		}
		return nil
	})

	dir := t.TempDir()
	hostMarker, memberMarker := dir+"/through-the-host", dir+"/in-the-member"
	res, err := env.Host.Kubectl(ctx, nil, "exec", "-n", ns, "victim", "--", "touch", hostMarker)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "no copy of this pod that Tether owns") {
		t.Errorf("kubectl exec through the host: exit %d, stderr %q; want a refusal", res.ExitCode, res.Stderr)
	}
	for _, args := range [][]string{{"logs", "-n", ns, "victim"}, {"attach", "-n", ns, "victim"}} {
		res, err := env.Host.Kubectl(ctx, nil, args...)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || strings.Contains(res.Stdout, sandbox.LogLines[0]) {
			t.Errorf("kubectl %s through the host: exit %d, stdout %q; want a refusal", args[0], res.ExitCode, res.Stdout)
		}
	}
	// The same exec straight to the member works, so the refusal above is Tether's.
	if res, err := m1.Kubectl(ctx, nil, "exec", "-n", ns, "victim", "--", "touch", memberMarker); err != nil || res.ExitCode != 0 {
		t.Fatalf("exec in the member: %v, %+v", err, res)
	}
	if _, err := os.Stat(memberMarker); err != nil {
		t.Fatalf("exec in the member ran nothing: %v", err)
	}
	if _, err := os.Stat(hostMarker); err == nil {
		t.Error("the command sent through the host ran in the member's own pod")
	}
}
