package kubelet

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"

	"github.com/tetherkube/tether/api"
)

func TestCountersIntegrateRates(t *testing.T) {
	var c counters
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		cores float64
		at    time.Time
		want  float64
	}{
		{0.5, t0, 0.5 * 15},                        // first sample: its window (15 s) at that rate
		{0.5, t0, 0.5 * 15},                        // same sample again: no change
		{1, t0.Add(10 * time.Second), 7.5 + 10},    // 10 s at 1 core
		{0.25, t0.Add(5 * time.Second), 17.5},      // an older sample never moves the counter back
		{0.25, t0.Add(14 * time.Second), 17.5 + 1}, // 4 s at 0.25
	}
	for i, s := range steps {
		if got := c.add("x", s.cores, s.at, 15*time.Second, t0); got != s.want {
			t.Errorf("step %d: %v, want %v", i, got, s.want)
		}
	}
	c.prune(t0.Add(time.Second))
	if got := c.add("x", 1, t0.Add(time.Minute), 0, t0); got != 0 {
		t.Errorf("a pruned counter starts again: %v", got)
	}
}

func podMetrics(ns, name string, at time.Time, containers ...metricsv1beta1.ContainerMetrics) *metricsv1beta1.PodMetrics {
	return &metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{api.LabelNode: "tether-m1"}},
		Timestamp:  metav1.NewTime(at), Window: metav1.Duration{Duration: 10 * time.Second}, Containers: containers,
	}
}

func usage(name, cpu, mem string) metricsv1beta1.ContainerMetrics {
	return metricsv1beta1.ContainerMetrics{Name: name, Usage: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}
}

func memberPod(ns, name, hostUID string, started time.Time, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{api.AnnotationHostUID: hostUID}}}
	for _, c := range containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}})
	}
	return p
}

// The usage of a virtual node is its own pods' usage in the member: pods the cache does not know (gone, or another
// node's) are left out, names and host UIDs are the host's, and the formats are the kubelet's.
func TestUsageRenderedAsKubeletFormats(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	started := at.Add(-time.Hour)
	metrics := metricsfake.NewSimpleClientset()
	for _, pm := range []*metricsv1beta1.PodMetrics{
		podMetrics("shop", "web-1", at, usage("app", "250m", "64Mi"), usage("sidecar", "50m", "16Mi")),
		podMetrics("shop", "gone", at, usage("app", "1", "1Gi")),
	} {
		// the metrics API calls PodMetrics "pods"; Tracker().Add would file them under "podmetricses"
		gvr := metricsv1beta1.SchemeGroupVersion.WithResource("pods")
		if err := metrics.Tracker().Create(gvr, pm, pm.Namespace); err != nil {
			t.Fatal(err)
		}
	}
	m := &Member{Name: "m1", NodeName: "tether-m1", Metrics: metrics, OwnedPods: func() ([]*corev1.Pod, error) {
		return []*corev1.Pod{memberPod("shop", "web-1", "host-uid-1", started, "app", "sidecar")}, nil
	}}
	r := &Relay{}
	u, err := r.Usage(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	want := NodeUsage{Node: "tether-m1", Time: at, CPUSeconds: 3, NanoCores: 300_000_000, Memory: 80 << 20, Pods: []PodUsage{{
		Namespace: "shop", Name: "web-1", UID: "host-uid-1", Time: at, CPUSeconds: 3, NanoCores: 300_000_000, Memory: 80 << 20,
		Containers: []ContainerUsage{
			{Name: "app", Start: started, Time: at, CPUSeconds: 2.5, NanoCores: 250_000_000, Memory: 64 << 20},
			{Name: "sidecar", Start: started, Time: at, CPUSeconds: 0.5, NanoCores: 50_000_000, Memory: 16 << 20},
		}}}}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Fatalf("usage (-want +got):\n%s", diff)
	}

	s := Summary([]NodeUsage{u})
	if s.Node.NodeName != "tether-m1" || *s.Node.CPU.UsageNanoCores != 300_000_000 || *s.Node.Memory.WorkingSetBytes != 80<<20 {
		t.Errorf("summary node: %+v", s.Node)
	}
	if len(s.Pods) != 1 || s.Pods[0].PodRef.UID != "host-uid-1" || len(s.Pods[0].Containers) != 2 ||
		*s.Pods[0].Containers[0].CPU.UsageCoreNanoSeconds != 2_500_000_000 || !s.Pods[0].StartTime.Time.Equal(started) {
		t.Errorf("summary pods: %+v", s.Pods)
	}

	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range ResourceMetrics([]NodeUsage{u}) {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	ms := at.UnixMilli()
	for _, line := range []string{
		`container_cpu_usage_seconds_total{container="app",namespace="shop",pod="web-1"} 2.5 ` + itoa(ms),
		`container_memory_working_set_bytes{container="sidecar",namespace="shop",pod="web-1"} 1.6777216e+07 ` + itoa(ms),
		`container_start_time_seconds{container="app",namespace="shop",pod="web-1"} ` + strconv.FormatFloat(float64(started.Unix()), 'g', -1, 64),
		`node_cpu_usage_seconds_total 3 ` + itoa(ms),
		`node_memory_working_set_bytes 8.388608e+07 ` + itoa(ms),
		`pod_cpu_usage_seconds_total{namespace="shop",pod="web-1"} 3 ` + itoa(ms),
	} {
		if !strings.Contains(buf.String(), line+"\n") && !strings.Contains(buf.String(), line+" ") {
			t.Errorf("/metrics/resource lacks %q:\n%s", line, buf.String())
		}
	}
	if strings.Contains(buf.String(), "gone") {
		t.Errorf("/metrics/resource names a pod this node does not own:\n%s", buf.String())
	}
}

func TestUsageWithoutMetricsAPIIsAClearError(t *testing.T) {
	metrics := metricsfake.NewSimpleClientset()
	metrics.PrependReactor("list", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "metrics.k8s.io", Resource: "pods"}, "")
	})
	_, err := (&Relay{}).Usage(t.Context(), &Member{Name: "m1", NodeName: "tether-m1", Metrics: metrics})
	if err == nil || !strings.Contains(err.Error(), "metrics.k8s.io") {
		t.Errorf("error %v should say that the member's metrics.k8s.io is missing", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
