package kubelet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

// kubeletGet reads a path of a virtual node's kubelet API with a bearer token, as metrics-server does.
func kubeletGet(ctx context.Context, node, path, token string) (int, string, error) {
	n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return 0, "", err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", n.Status.DaemonEndpoints.KubeletEndpoint.Port, path)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed in the harness
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricsToken is a ServiceAccount token with what metrics-server gets: nodes/metrics and nodes/stats.
func metricsToken(t *testing.T, ns string) string {
	t.Helper()
	ctx := t.Context()
	role, err := env.Host.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-node-metrics-"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/metrics", "nodes/stats"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	binding, err := env.Host.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-node-metrics-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "scraper", Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Host.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		_ = env.Host.Client.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	if _, err := env.Host.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "scraper"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(env.Host.MustKubectl(t, nil, "create", "token", "-n", ns, "scraper"))
}

// TestNodeMetrics reads /metrics/resource and /stats/summary of the virtual nodes as metrics-server does. The pod
// runs in member m2, whose metrics-server reports kwok's usage (the pod's usage annotations); each virtual node
// has a port of its own, so the pod appears on tether-m2's and not on tether-m1's.
func TestNodeMetrics(t *testing.T) {
	ns := env.Host.Namespace(t, nil)
	const name = "busy"
	_, err := env.Host.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"kwok.x-k8s.io/usage-cpu": "200m", "kwok.x-k8s.io/usage-memory": "64Mi"}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{api.LabelMember: "m2"},
			Tolerations:  []corev1.Toleration{{Key: api.TaintKey, Operator: corev1.TolerationOpExists}},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := metricsToken(t, ns)

	podLine := fmt.Sprintf(`pod_memory_working_set_bytes{namespace=%q,pod=%q} 6.7108864e+07`, ns, name)
	// metrics-server needs two scrapes of kwok (15 s apart) before the member's metrics.k8s.io has the pod.
	framework.Eventually(t, 3*time.Minute, "the pod's usage in tether-m2's /metrics/resource", func(ctx context.Context) error {
		code, body, err := kubeletGet(ctx, "tether-m2", "/metrics/resource", token)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, podLine) || !strings.Contains(body, "node_cpu_usage_seconds_total") {
			return fmt.Errorf("%d, no %q in:\n%s", code, podLine, body)
		}
		if !strings.Contains(body, fmt.Sprintf(`container_cpu_usage_seconds_total{container="app",namespace=%q,pod=%q}`, ns, name)) {
			return fmt.Errorf("no container CPU in:\n%s", body)
		}
		return nil
	})

	code, body, err := kubeletGet(t.Context(), "tether-m2", "/stats/summary", token)
	if err != nil || code != http.StatusOK {
		t.Fatalf("/stats/summary: %d %v %s", code, err, body)
	}
	var summary statsv1alpha1.Summary
	if err := json.Unmarshal([]byte(body), &summary); err != nil {
		t.Fatalf("/stats/summary is not a Summary: %v\n%s", err, body)
	}
	if summary.Node.NodeName != "tether-m2" {
		t.Errorf("summary of node %q, want tether-m2", summary.Node.NodeName)
	}
	host, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range summary.Pods {
		if p.PodRef.Namespace != ns || p.PodRef.Name != name {
			continue
		}
		found = true
		if p.PodRef.UID != string(host.UID) || p.Memory == nil || *p.Memory.WorkingSetBytes != 64<<20 || p.CPU == nil || *p.CPU.UsageNanoCores == 0 {
			t.Errorf("summary of the pod: %+v (want the host UID %s, 64Mi, some CPU)", p, host.UID)
		}
	}
	if !found {
		t.Errorf("/stats/summary does not name the pod:\n%s", body)
	}

	code, body, err = kubeletGet(t.Context(), "tether-m1", "/metrics/resource", token)
	if err != nil || code != http.StatusOK || strings.Contains(body, fmt.Sprintf("pod=%q", name)) {
		t.Errorf("tether-m1's /metrics/resource: %d %v, and must not name a pod of tether-m2:\n%s", code, err, body)
	}
	if code, _, _ := kubeletGet(t.Context(), "tether-m2", "/metrics/resource", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("an invalid token: %d, want 401", code)
	}
}

// TestServingCertificateFromCSR runs a second tether-node (no members, its own namespace) that asks the host for its
// kubelet serving certificate: it waits for the CertificateSigningRequest, approves it as an administrator would,
// and checks the listener presents a certificate of the host's kubelet-serving signer; a restart reuses it.
func TestServingCertificateFromCSR(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	bin := filepath.Join(t.TempDir(), "tether-node")
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tether-node")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tether-node: %v\n%s", err, out)
	}
	port, err := sandbox.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--kubeconfig", env.Host.Kubeconfig, "--namespace", ns, "--node-prefix", "csr-",
			"--kubelet-bind-address", "127.0.0.1", "--kubelet-port", fmt.Sprint(port), "--rotate-server-certificates")
		logf, err := os.Create(filepath.Join(t.TempDir(), "tether-node.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			logf.Close()
		})
		return cmd
	}
	first := start()

	var csrName string
	framework.Eventually(t, time.Minute, "a kubelet-serving CertificateSigningRequest", func(ctx context.Context) error {
		list, err := env.Host.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, csr := range list.Items {
			if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName && len(csr.Status.Conditions) == 0 {
				csrName = csr.Name
				return nil
			}
		}
		return fmt.Errorf("none pending among %d", len(list.Items))
	})
	t.Cleanup(func() {
		_ = env.Host.Client.CertificatesV1().CertificateSigningRequests().Delete(context.Background(), csrName, metav1.DeleteOptions{})
	})
	env.Host.MustKubectl(t, nil, "certificate", "approve", csrName)

	var served *x509.Certificate
	framework.Eventually(t, time.Minute, "the signed serving certificate on the kubelet port", func(ctx context.Context) error {
		cert, err := servingCert(port)
		if err != nil {
			return err
		}
		served = cert
		return nil
	})
	if served.Subject.CommonName != "system:node:tether-node" || served.Issuer.CommonName == served.Subject.CommonName {
		t.Errorf("served certificate %q issued by %q, want system:node:tether-node signed by the host's CA", served.Subject, served.Issuer)
	}

	// A restart finds the certificate in its Secret: no new request, the same certificate.
	_ = first.Process.Signal(syscall.SIGTERM)
	_ = first.Wait()
	start()
	framework.Eventually(t, time.Minute, "the same certificate after a restart", func(ctx context.Context) error {
		cert, err := servingCert(port)
		if err != nil {
			return err
		}
		if !cert.Equal(served) {
			return fmt.Errorf("a different certificate: %s", cert.SerialNumber)
		}
		return nil
	})
	list, err := env.Host.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, csr := range list.Items {
		if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName && csr.Name != csrName {
			t.Errorf("a restart made a new request %s", csr.Name)
		}
	}
}

// servingCert is the certificate a TLS listener on 127.0.0.1:port presents.
func servingCert(port int) (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true}) // we inspect it
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}
