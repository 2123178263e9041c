package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseStatCPU(t *testing.T) {
	// The command name holds a space and a parenthesis; utime=250, stime=50 ticks.
	stat := "1234 (tether (node)) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 12 0 100 1000000 2000 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Errorf("cpu = %v s, want 3", got)
	}
	if _, err := parseStatCPU("1234 (x) S 1"); err == nil {
		t.Error("a short line must be an error")
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS("Name:\ttether-node\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\nThreads: 12\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != 2048*1024 {
		t.Errorf("rss = %d, want %d", got, 2048*1024)
	}
	if _, err := parseVmRSS("Name: x\n"); err == nil {
		t.Error("no VmRSS line must be an error")
	}
}

const metricsText = `# HELP go_memstats_heap_alloc_bytes Number of heap bytes allocated and currently in use.
# TYPE go_memstats_heap_alloc_bytes gauge
go_memstats_heap_alloc_bytes 1.2345e+07
tether_node_api_requests_total{host="127.0.0.1:1000",resource="pods/status",verb="PUT"} 1990
tether_node_api_requests_total{host="127.0.0.1:2000",resource="pods",verb="POST"} 500
tether_node_api_requests_total{host="127.0.0.1:3000",resource="pods",verb="POST"} 500
tether_node_api_requests_total{host="127.0.0.1:2000",resource="pods",verb="LIST"} 1
`

func TestParseMetricsAndTetherRequests(t *testing.T) {
	ms, err := parseMetrics(strings.NewReader(metricsText))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 || ms[0].Name != "go_memstats_heap_alloc_bytes" || ms[0].Value != 12345000 {
		t.Fatalf("samples = %+v", ms)
	}
	names := map[string]string{"127.0.0.1:1000": "host", "127.0.0.1:2000": "m1", "127.0.0.1:3000": "m2"}
	got := tetherRequests(ms, func(hp string) string { return names[hp] })
	want := requestCounts{
		{"host", "PUT", "pods/status"}: 1990,
		{"m1", "POST", "pods"}:         500,
		{"m2", "POST", "pods"}:         500,
		{"m1", "LIST", "pods"}:         1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tetherRequests (-want +got):\n%s", diff)
	}
	before := requestCounts{{"host", "PUT", "pods/status"}: 990, {"m1", "LIST", "pods"}: 1}
	delta := got.sub(before)
	if diff := cmp.Diff(requestCounts{{"host", "PUT", "pods/status"}: 1000, {"m1", "POST", "pods"}: 500, {"m2", "POST", "pods"}: 500}, delta); diff != "" {
		t.Errorf("sub (-want +got):\n%s", diff)
	}
	if w := delta.writes(func(c string) bool { return c != "host" }); w != 1000 {
		t.Errorf("member writes = %v, want 1000", w)
	}
	if _, err := parseMetrics(strings.NewReader("novalue\n")); err == nil {
		t.Error("a sample without a value must be an error")
	}
}

func TestProcessKey(t *testing.T) {
	for bin, want := range map[string]string{
		"/tmp/b/timed/kwok/clusters/bench-host/bin/kube-apiserver": "host/kube-apiserver",
		"/tmp/b/timed/kwok/clusters/benchaudit-m2/bin/etcd":        "m2/etcd",
		"/tmp/b/bin/tether-node":                                   "tether-node",
	} {
		if got := processKey(bin); got != want {
			t.Errorf("processKey(%s) = %s, want %s", bin, got, want)
		}
	}
}

func TestCPULine(t *testing.T) {
	got := cpuLine(map[string]float64{"host/etcd": 1, "tether-node": 2.5, "m1/kwok": 0.05})
	if want := "total 3.5, tether-node 2.5, host/etcd 1.0"; got != want {
		t.Errorf("cpuLine = %q, want %q", got, want)
	}
}

func TestHistogramQuantile(t *testing.T) {
	text := `tether_node_pod_status_delay_seconds_bucket{member="m1",le="0.1"} 40
tether_node_pod_status_delay_seconds_bucket{member="m1",le="1"} 90
tether_node_pod_status_delay_seconds_bucket{member="m1",le="+Inf"} 100
tether_node_pod_status_delay_seconds_bucket{member="m2",le="0.1"} 60
tether_node_pod_status_delay_seconds_bucket{member="m2",le="1"} 100
tether_node_pod_status_delay_seconds_bucket{member="m2",le="+Inf"} 100
tether_node_pod_status_delay_seconds_count{member="m2"} 100
`
	ms, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	h := histogramOf(ms, statusDelayMetric, nil)
	if m2 := histogramOf(ms, statusDelayMetric, map[string]string{"member": "m2"}); m2[0.1] != 60 {
		t.Errorf("m2 only: %v", m2)
	}
	if h[math.Inf(1)] != 200 || h[0.1] != 100 {
		t.Fatalf("histogram = %v", h)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0.25, 50 * time.Millisecond},   // rank 50 of 100 in [0, 0.1]
		{0.5, 100 * time.Millisecond},   // rank 100: the top of the first bucket
		{0.95, 1000 * time.Millisecond}, // rank 190: the +Inf bucket → the largest finite bound
	} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	before := histogram{0.1: 100, 1: 190, math.Inf(1): 200}
	if q := h.sub(before).quantile(0.5); q != 0 {
		t.Errorf("empty difference: quantile = %v, want 0", q)
	}
}
