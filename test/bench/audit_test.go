package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const auditLog = `{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"create","userAgent":"tether-node","requestReceivedTimestamp":"2026-11-25T10:00:01.000000Z","objectRef":{"resource":"pods","namespace":"bench-w1"},"requestURI":"/api/v1/namespaces/bench-w1/pods"}
{"kind":"Event","auditID":"a2","stage":"ResponseComplete","verb":"update","userAgent":"tether-node","requestReceivedTimestamp":"2026-11-25T10:00:02.000000Z","objectRef":{"resource":"pods","subresource":"status"},"requestURI":"/api/v1/namespaces/bench-w1/pods/p/status"}
{"kind":"Event","auditID":"a3","stage":"ResponseStarted","verb":"watch","userAgent":"kube-scheduler/v1.36.3 (linux/amd64) kubernetes/abc/scheduler","requestReceivedTimestamp":"2026-11-25T10:00:03.000000Z","objectRef":{"resource":"pods"},"requestURI":"/api/v1/pods?watch=true"}
{"kind":"Event","auditID":"a3","stage":"ResponseComplete","verb":"watch","userAgent":"kube-scheduler/v1.36.3 (linux/amd64) kubernetes/abc/scheduler","requestReceivedTimestamp":"2026-11-25T10:00:03.000000Z","objectRef":{"resource":"pods"},"requestURI":"/api/v1/pods?watch=true"}
{"kind":"Event","auditID":"a4","stage":"ResponseComplete","verb":"get","userAgent":"","requestReceivedTimestamp":"2026-11-25T10:00:04.000000Z","requestURI":"/readyz?verbose"}
{"kind":"Event","auditID":"a5","stage":"ResponseComplete","verb":"create","userAgent":"tether-node","requestReceivedTimestamp":"2026-11-25T10:00:09.000000Z","objectRef":{"resource":"pods"},"requestURI":"/api/v1/namespaces/x/pods"}
{"kind":"Event","auditID":"a0","stage":"ResponseComplete","verb":"list","userAgent":"tether-node","requestReceivedTimestamp":"2026-11-25T09:59:59.000000Z","objectRef":{"resource":"pods"},"requestURI":"/api/v1/pods"}
`

func TestCountAudit(t *testing.T) {
	from := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	got, err := countAudit(strings.NewReader(auditLog), from, from.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// a0 is before the window, a5 after it; a3 counts once although it logged two stages.
	want := map[auditKey]int{
		{"tether-node", "create", "pods"}:        1,
		{"tether-node", "update", "pods/status"}: 1,
		{"kube-scheduler", "watch", "pods"}:      1,
		{"unknown", "get", "/readyz"}:            1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("countAudit (-want +got):\n%s", diff)
	}
	if _, err := countAudit(strings.NewReader("not json\n"), from, from); err == nil {
		t.Error("a line that is not JSON must be an error")
	}
}

func TestPerPodAndTotals(t *testing.T) {
	byCluster := map[string]map[auditKey]int{
		"host": {
			{"tether-node", "update", "pods/status"}:     2000,
			{"tether-node", "get", "nodes"}:              10,
			{"tether-bench", "create", "pods"}:           1000,
			{"kube-scheduler", "create", "pods/binding"}: 1000,
		},
		"m1": {
			{"tether-node", "create", "pods"}:            500,
			{"tether-node", "list", "pods"}:              2,
			{"kube-scheduler", "create", "pods/binding"}: 500,
			{"kwok", "patch", "pods/status"}:             500,
		},
		"m2": {{"tether-node", "create", "pods"}: 500},
	}
	lines := perPod(byCluster, 1000)
	if lines[0].Cluster != "host" || lines[len(lines)-1].Cluster != "m2" {
		t.Errorf("lines not sorted by cluster: %+v", lines)
	}
	host := totals(lines, func(c string) bool { return c == "host" })
	members := totals(lines, func(c string) bool { return c != "host" })
	wantHost := apiTotals{TetherWrites: 2, TetherReads: 0.01, LoadWrites: 1, RestWrites: 1, HostStatusWrites: 2}
	wantMembers := apiTotals{TetherWrites: 1, TetherReads: 0.002, TetherLists: 2, RestWrites: 1, MemberPodCreates: 1}
	if diff := cmp.Diff(wantHost, host); diff != "" {
		t.Errorf("host totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantMembers, members); diff != "" {
		t.Errorf("member totals (-want +got):\n%s", diff)
	}
}

func TestComponent(t *testing.T) {
	for ua, want := range map[string]string{
		"kube-controller-manager/v1.36.3 (linux/amd64) kubernetes/abc/system:serviceaccount:kube-system:replicaset-controller": "kube-controller-manager",
		"tether-node": "tether-node",
		"":            "unknown",
		"kwok/v0.8.0": "kwok",
	} {
		if got := component(ua); got != want {
			t.Errorf("component(%q) = %q, want %q", ua, got, want)
		}
	}
}
