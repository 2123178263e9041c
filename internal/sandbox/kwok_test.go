package sandbox

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestRenderKwokctlConfig(t *testing.T) {
	tools := toolsIn("/cache/tools/k", "/cache/tools/ms", "v1.36.3")
	tests := []struct {
		name, target string
		host, noQPS  bool
	}{
		{name: "host.yaml", host: true},
		{name: "member.yaml"},
		{name: "member-target-noqps.yaml", target: "127.0.0.1:8080", noQPS: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderKwokctlConfig(tools, tt.host, tt.noQPS, tt.noQPS, "/sandbox/pki", "/sandbox/kwok/clusters/tether-host/pki", "/sandbox/container.log", "/sandbox/attach.log", tt.target)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, got)
		})
	}
	if _, err := renderKwokctlConfig(tools, false, false, false, "", "", "", "", "no-port"); err == nil {
		t.Error("a target without a port must be refused")
	}
}

func TestWriteContainerLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := writeContainerLog(path, now); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(LogLines) {
		t.Fatalf("%d lines, want %d", len(lines), len(LogLines))
	}
	if want := "2026-11-25T10:00:00Z stdout F " + LogLines[0]; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if want := "2026-11-25T12:00:00Z stdout F " + LogLines[4]; lines[4] != want {
		t.Errorf("last line %q, want %q", lines[4], want)
	}
}

func TestKwokNode(t *testing.T) {
	n := kwokNode(NodeConfig{Name: "m1-node-0", CPU: "4", Memory: "8Gi", Pods: 10, Labels: map[string]string{"disktype": "ssd", "type": "custom"},
		Taints: []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}})
	if n.Annotations["kwok.x-k8s.io/node"] != "fake" {
		t.Error("node is not marked for kwok")
	}
	if n.Labels["disktype"] != "ssd" || n.Labels["type"] != "custom" || n.Labels["kubernetes.io/hostname"] != "m1-node-0" {
		t.Errorf("labels %v", n.Labels)
	}
	if got := n.Status.Allocatable.Pods().Value(); got != 10 {
		t.Errorf("pods %d", got)
	}
	if got := n.Status.Allocatable.Memory().String(); got != "8Gi" {
		t.Errorf("memory %s", got)
	}
	if len(n.Spec.Taints) != 1 {
		t.Errorf("taints %v", n.Spec.Taints)
	}
}
