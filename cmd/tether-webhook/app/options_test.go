package app

import (
	"strings"
	"testing"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	o := NewOptions()
	o.NamespaceSelector = "a in (b"
	o.IPAddresses = []string{"127.0.0.1", "nowhere"}
	o.FailurePolicy = "Sometimes"
	o.TimeoutSeconds = 31
	o.TLSCertFile = "/c"
	o.TolerationSeconds = -1
	o.NodePrefix = "Tether_"
	o.KeepLabelKeys = []string{"ok.example.com/key", "not a key"}
	o.ServicePort = 0
	o.URL = "http://insecure/mutate"
	o.LogLevel = "loud"
	o.AvoidConfigMap = "Bad_Name"
	o.SchedulerName = "Tether Scheduler"
	_, _, err := o.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"--namespace-selector", `"nowhere" is not an IP address`, `--failure-policy "Sometimes"`,
		"--timeout-seconds 31", "--tls-cert-file and --tls-private-key-file", "--toleration-seconds", `--node-prefix "Tether_"`,
		`--keep-label-keys "not a key"`, "--service-port 0", `--url "http://insecure/mutate"`, "--log-level", `--avoid-configmap "Bad_Name"`, `--scheduler-name "Tether Scheduler"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "ok.example.com/key") {
		t.Errorf("a valid key is refused:\n%v", err)
	}
	if _, _, err := NewOptions().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
