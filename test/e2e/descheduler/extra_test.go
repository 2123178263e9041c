package descheduler_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

// Issue 14, test 4: a pod bound to a virtual node that is merely slow to start (Pending, scheduled, not
// unschedulable: here its ConfigMap does not exist yet, so tether-node waits) is never touched.
func TestSlowToStartUntouched(t *testing.T) {
	ns := offloadNamespace(t)
	deployment(t, ns, "slow", "100m", func(s *corev1.PodSpec) {
		s.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "not-yet"}}}}
	})
	var pod *corev1.Pod
	framework.Eventually(t, timeout, "the pod bound to a virtual node, Pending", func(ctx context.Context) error {
		ps, err := pods(ctx, ns, "slow")
		if err != nil || len(ps) != 1 {
			return fmt.Errorf("%d pods (%v)", len(ps), err)
		}
		if !strings.HasPrefix(ps[0].Spec.NodeName, "tether-") || ps[0].Status.Phase != corev1.PodPending {
			return fmt.Errorf("pod on %q, %s", ps[0].Spec.NodeName, ps[0].Status.Phase)
		}
		pod = &ps[0]
		return nil
	})
	if err := waitCycles(t.Context(), env, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Longer than unschedulableFor: three cycles of 5 s.
	holds(t, ns, "slow", pod.UID, 3)
	if p, err := env.Host.Client.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{}); err != nil || unschedulable(p) != nil {
		t.Errorf("the pod should be Pending without Unschedulable: %v %v", err, p.Status.Conditions)
	}
}

// metric reads one sample of tether-descheduler's /metrics (HTTPS on its --secure-port, self-signed).
func metric(t *testing.T, name string, labels ...string) (string, error) {
	t.Helper()
	p := env.State.Process(sandbox.TetherDescheduler)
	if p == nil {
		return "", fmt.Errorf("no %s", sandbox.TetherDescheduler)
	}
	i := slices.Index(p.Args, "--secure-port")
	if i < 0 || i+1 >= len(p.Args) {
		return "", fmt.Errorf("no --secure-port in %v", p.Args)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the self-signed serving certificate of the harness
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://127.0.0.1:"+p.Args[i+1]+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, name+"{") && !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
			f := strings.Fields(line)
			return f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("%s %v not in /metrics (status %d)", name, labels, resp.StatusCode)
}
