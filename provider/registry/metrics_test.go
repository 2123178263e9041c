package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/api"
)

// sample finds one sample of a gathered metric family by its labels: a gauge's or counter's value, a histogram's
// count.
func sample(reg prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	families, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.Gauge != nil:
					return m.Gauge.GetValue(), nil
				case m.Counter != nil:
					return m.Counter.GetValue(), nil
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount()), nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no sample %s%v", name, labels)
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

func wantSample(reg prometheus.Gatherer, name string, labels map[string]string, want float64) func() error {
	return func() error {
		got, err := sample(reg, name, labels)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
		return nil
	}
}

func hostPod(name, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "app", UID: k8stypes.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

// Member health and pods per phase come from the registry and the host pod cache at scrape time; a pod the pod
// controller creates in the member is timed from its binding.
func TestStateMetrics(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	ctx := t.Context()
	// Pods that are not to be created in the member: finished, or on another node.
	for _, p := range []*corev1.Pod{hostPod("done", "tether-m1", corev1.PodSucceeded), hostPod("failed", "tether-m1", corev1.PodFailed),
		hostPod("elsewhere", "real-node", corev1.PodRunning)} {
		if _, err := e.host.CoreV1().Pods("app").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.start(func(c *Config) {
		c.MemberSecrets = false
		c.Members = []Member{{Name: "m1", Config: &rest.Config{Host: "https://m1"}}}
	})
	eventually(t, "serving", e.serving(r, "m1", true))
	eventually(t, "member up", wantSample(e.metrics, "tether_node_member_up", map[string]string{"member": "m1"}, 1))
	if _, err := e.host.CoreV1().Pods("app").Create(ctx, hostPod("new", "tether-m1", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "member pod created", func() error {
		_, err := e.members["https://m1"].CoreV1().Pods("app").Get(ctx, "new", metav1.GetOptions{})
		return err
	})
	eventually(t, "create delay observed", wantSample(e.metrics, "tether_node_pod_create_delay_seconds", map[string]string{"member": "m1"}, 1))
	for phase, want := range map[corev1.PodPhase]float64{corev1.PodPending: 1, corev1.PodRunning: 0, corev1.PodSucceeded: 1, corev1.PodFailed: 1, corev1.PodUnknown: 0} {
		eventually(t, "pods "+string(phase), wantSample(e.metrics, "tether_node_pods", map[string]string{"member": "m1", "phase": string(phase)}, want))
	}
	if _, err := sample(e.metrics, "tether_node_pods", map[string]string{"member": "real-node"}); err == nil {
		t.Error("a pod of a real node is counted")
	}
}

// A member that comes, goes and comes again keeps one set of series: nothing is registered twice, and a member that
// left has no health series.
func TestMetricsAcrossMemberRestarts(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	r := e.start(nil)
	ctx := t.Context()
	secrets := e.host.CoreV1().Secrets(api.DefaultNamespace)
	for range 2 {
		if _, err := secrets.Create(ctx, memberSecret("m1", "m1", kubeconfig("https://m1")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "serving", e.serving(r, "m1", true))
		eventually(t, "member up", wantSample(e.metrics, "tether_node_member_up", map[string]string{"member": "m1"}, 1))
		if err := secrets.Delete(ctx, "m1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "stopped", e.serving(r, "m1", false))
		eventually(t, "no health series", func() error {
			if _, err := sample(e.metrics, "tether_node_member_up", map[string]string{"member": "m1"}); err == nil {
				return errors.New("tether_node_member_up{member=m1} still reported")
			}
			return nil
		})
	}
	// The registry's metrics are registered once: a second registry on the same Prometheus registry is refused.
	if _, err := New(r.cfg); err == nil {
		t.Error("a second registry registered the same metrics")
	}
}

func TestErrorReason(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("create member pod a/b: %w", apierrors.NewConflict(pods, "b", errors.New("x"))), "Conflict"},
		{fmt.Errorf("create: %w", apierrors.NewForbidden(pods, "b", errors.New("x"))), "Forbidden"},
		{apierrors.NewTooManyRequests("slow down", 1), "TooManyRequests"},
		{fmt.Errorf("create: %w", context.DeadlineExceeded), "Timeout"},
		{errdefs.NotFound("gone"), "NotFound"},
		{fmt.Errorf("get: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), "Network"},
		{errors.New("member m1 already has pod a/b that Tether does not own"), "Other"},
	} {
		if got := errorReason(tc.err); got != tc.want {
			t.Errorf("errorReason(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
