package sandbox

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestRewritePath(t *testing.T) {
	mounts := map[string]string{"/etc/tether": "/tmp/a", "/etc/tether/policy": "/tmp/b", "/tmp": "/tmp/c"}
	for arg, want := range map[string]string{
		"--policy-config-file=/etc/tether/policy/policy.yaml": "--policy-config-file=/tmp/b/policy.yaml",
		"--client-ca-file=/etc/tether/ca.crt":                 "--client-ca-file=/tmp/a/ca.crt",
		"/etc/tether/policy":                                  "/tmp/b",
		"--config=/etc/tetherx/config.yaml":                   "--config=/etc/tetherx/config.yaml",
		"--leader-elect":                                      "--leader-elect",
		"--namespace=tether-system":                           "--namespace=tether-system",
		"--log-dir=/tmp":                                      "--log-dir=/tmp/c",
	} {
		if got := rewritePath(arg, mounts); got != want {
			t.Errorf("rewritePath(%q) = %q, want %q", arg, got, want)
		}
	}
}

func TestContainerEnv(t *testing.T) {
	c := corev1.Container{Env: []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "ADDR", Value: "$(POD_IP):10250"},
	}}
	env, err := containerEnv("tether-node", "tether-system", c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"POD_IP": "127.0.0.1", "NS": "tether-system", "ADDR": "127.0.0.1:10250"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if got := expandEnv("--kubelet-address=$(POD_IP)", env); got != "--kubelet-address=127.0.0.1" {
		t.Errorf("expandEnv: %q", got)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{}}})
	if _, err := containerEnv("n", "ns", c); err == nil {
		t.Error("a Secret reference in env: no error")
	}
}

func TestParseChart(t *testing.T) {
	c, err := ParseChart([]byte(`---
# Source: tether/templates/node/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: tether-node
  namespace: tether-system
---
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: tether-node
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Objects) != 2 || c.Find("Deployment", "tether-node") == nil || c.Find("ServiceAccount", "tether-node").GetNamespace() != "tether-system" {
		t.Errorf("objects %v", c.Objects)
	}
	if c.Find("Deployment", "tether-webhook") != nil {
		t.Error("found a Deployment that is not there")
	}
	if _, err := ParseChart([]byte("kind: [")); err == nil {
		t.Error("broken YAML: no error")
	}
}
