package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestKwokComponentArgs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kwok.yaml")
	conf := `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
---
components:
- args: [--secure-port=1, --kubeconfig=/k]
  binary: /w/bin/metrics-server
  name: metrics-server
- binary: /w/bin/etcd
  name: etcd
kind: KwokctlConfiguration
`
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := kwokComponentArgs(path, metricsServerComponent)
	if err != nil || !slices.Equal(got, []string{"/w/bin/metrics-server", "--secure-port=1", "--kubeconfig=/k"}) {
		t.Errorf("metrics-server: %v, %v", got, err)
	}
	if got, err := kwokComponentArgs(path, "kube-apiserver"); err != nil || got != nil {
		t.Errorf("absent component: %v, %v", got, err)
	}
	dead := filepath.Join(t.TempDir(), "x.pid")
	if err := os.WriteFile(dead, []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if alive(dead) {
		t.Error("a pid that does not exist is alive")
	}
	self := filepath.Join(t.TempDir(), "self.pid")
	if err := os.WriteFile(self, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if !alive(self) {
		t.Error("this process is not alive")
	}
}
