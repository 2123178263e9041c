package sandbox

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// The kwokctl configuration, as far as the harness sets it. Field names follow
// sigs.k8s.io/kwok/pkg/apis/config/v1alpha1; the module is not imported so that kwok's dependency pins stay out of
// Tether's module.
type kwokctlConfiguration struct {
	APIVersion        string             `json:"apiVersion"`
	Kind              string             `json:"kind"`
	Options           kwokctlOptions     `json:"options"`
	ComponentsPatches []componentPatches `json:"componentsPatches,omitempty"`
}

type kwokctlOptions struct {
	Runtime                                                 string   `json:"runtime"`
	BindAddress                                             string   `json:"bindAddress"`
	KubeApiserverBinary                                     string   `json:"kubeApiserverBinary"`
	KubeControllerManagerBinary                             string   `json:"kubeControllerManagerBinary"`
	KubeSchedulerBinary                                     string   `json:"kubeSchedulerBinary"`
	KubectlBinary                                           string   `json:"kubectlBinary"`
	EtcdBinary                                              string   `json:"etcdBinary"`
	KwokControllerBinary                                    string   `json:"kwokControllerBinary"`
	KubeVersion                                             string   `json:"kubeVersion"`
	Disable                                                 []string `json:"disable,omitempty"`
	DisableQPSLimits                                        bool     `json:"disableQPSLimits"`
	KubeControllerManagerNodeMonitorPeriodMilliseconds      int64    `json:"kubeControllerManagerNodeMonitorPeriodMilliseconds,omitempty"`
	KubeControllerManagerNodeMonitorGracePeriodMilliseconds int64    `json:"kubeControllerManagerNodeMonitorGracePeriodMilliseconds,omitempty"`
	HeartbeatFactor                                         float64  `json:"heartbeatFactor,omitempty"`
	EnableMetricsServer                                     bool     `json:"enableMetricsServer,omitempty"`
	MetricsServerBinary                                     string   `json:"metricsServerBinary,omitempty"`
	MetricsServerManifests                                  []string `json:"metricsServerManifests,omitempty"`
}

type componentPatches struct {
	Name      string      `json:"name"`
	ExtraArgs []extraArgs `json:"extraArgs,omitempty"`
}

type extraArgs struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// kwok resources that give every pod of a member logs, exec, attach and port-forward. They go into the kwokctl
// configuration, which kwokctl hands to kwok-controller at start: applied as objects after creation they would be
// invisible to kwok until its CRDs exist.
type kwokResource struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]string `json:"metadata"`
	Spec       map[string]any    `json:"spec"`
}

// LogLines are the lines kwok serves as every member container's log (`kubectl logs`), oldest first, each
// stamped with a time relative to the moment the cluster was created: two hours ago, one hour ago, then now.
var LogLines = []string{
	"tether harness: line 1 (two hours old)",
	"tether harness: line 2 (one hour old)",
	"tether harness: line 3",
	"tether harness: line 4",
	"tether harness: line 5",
}

// AppendAttachLine appends a line to what `kubectl attach` shows of every member container: kwok streams the
// attach file from its end, so only lines written while attached come through.
func (s *State) AppendAttachLine(text string) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, attachLog), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), text)
	return err
}

// Files kwok serves: logs, and what attach streams.
const (
	containerLog = "container.log"
	attachLog    = "attach.log"
)

// writeContainerLog writes LogLines in the CRI log format that kwok parses (it honours since, tail, timestamps).
func writeContainerLog(path string, now time.Time) error {
	ages := []time.Duration{2 * time.Hour, time.Hour, 0, 0, 0}
	var b strings.Builder
	for i, line := range LogLines {
		fmt.Fprintf(&b, "%s stdout F %s\n", now.Add(-ages[i]).UTC().Format(time.RFC3339Nano), line)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// renderKwokctlConfig renders the multi-document configuration of one cluster.
// signingDir holds the cluster's own CA (ca.crt, ca.key, made by kwokctl): the host's controller manager signs
// kubelet serving certificates with it.
func renderKwokctlConfig(t *Tools, host bool, disableQPSLimits, noMetricsServer bool, pkiDir, signingDir, logFile, attachFile, portForwardTarget string) ([]byte, error) {
	conf := kwokctlConfiguration{
		APIVersion: "config.kwok.x-k8s.io/v1alpha1",
		Kind:       "KwokctlConfiguration",
		Options: kwokctlOptions{
			Runtime:                     "binary",
			BindAddress:                 "127.0.0.1",
			KubeApiserverBinary:         t.KubeApiserver,
			KubeControllerManagerBinary: t.KubeControllerManager,
			KubeSchedulerBinary:         t.KubeScheduler,
			KubectlBinary:               t.Kubectl,
			EtcdBinary:                  t.Etcd,
			KwokControllerBinary:        t.Kwok,
			KubeVersion:                 t.KubernetesVersion,
			DisableQPSLimits:            disableQPSLimits,
		},
	}
	docs := []any{&conf}
	if host {
		// Tether's virtual nodes are the host's only nodes: no kwok controller may take them over. The node
		// lifecycle controller keeps the upstream timings, so an unreachable member turns its node NotReady
		// as in a real cluster.
		conf.Options.Disable = []string{"kwok-controller"}
		conf.Options.KubeControllerManagerNodeMonitorPeriodMilliseconds = 5000
		conf.Options.KubeControllerManagerNodeMonitorGracePeriodMilliseconds = 40000
		conf.Options.HeartbeatFactor = 1 // kwokctl multiplies the two above by 5 otherwise
		// The apiserver presents a client certificate to kubelets (Tether's kubelet API checks it against
		// kubelet-client-ca.crt) and does not verify kubelet serving certificates, since Tether's sandbox
		// serves a self-signed one.
		conf.ComponentsPatches = []componentPatches{{
			Name: "kube-apiserver",
			ExtraArgs: []extraArgs{
				{Key: "kubelet-client-certificate", Value: filepath.Join(pkiDir, kubeletClientCert)},
				{Key: "kubelet-client-key", Value: filepath.Join(pkiDir, kubeletClientKey)},
				{Key: "kubelet-preferred-address-types", Value: "InternalIP,Hostname"},
			},
		}, {
			// CertificateSigningRequests for kubelet serving certificates (tether-node
			// --rotate-server-certificates) are signed, once approved, with the cluster's CA.
			Name: "kube-controller-manager",
			ExtraArgs: []extraArgs{
				{Key: "cluster-signing-kubelet-serving-cert-file", Value: filepath.Join(signingDir, "ca.crt")},
				{Key: "cluster-signing-kubelet-serving-key-file", Value: filepath.Join(signingDir, "ca.key")},
			},
		}}
	} else {
		// metrics-server makes the member serve metrics.k8s.io from kwok's fake usage (1m CPU and 1Mi memory per
		// pod, or the pod's annotations kwok.x-k8s.io/usage-cpu and kwok.x-k8s.io/usage-memory). kwokctl runs it
		// only beside a kwok-controller, so the host has none.
		if !noMetricsServer {
			conf.Options.EnableMetricsServer = true
			conf.Options.MetricsServerBinary = t.MetricsServer
			conf.Options.MetricsServerManifests = []string{t.MetricsServerManifests}
		}
		all := map[string]string{"name": "tether-harness"}
		forward := map[string]any{"command": []string{"cat"}} // an echo server
		if portForwardTarget != "" {
			host, port, err := net.SplitHostPort(portForwardTarget)
			if err != nil {
				return nil, fmt.Errorf("port-forward target %q: %w", portForwardTarget, err)
			}
			p, err := strconv.ParseInt(port, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("port-forward target %q: %w", portForwardTarget, err)
			}
			forward = map[string]any{"target": map[string]any{"address": host, "port": p}}
		}
		docs = append(docs,
			kwokResource{"kwok.x-k8s.io/v1alpha1", "ClusterLogs", all,
				map[string]any{"logs": []any{map[string]any{"logsFile": logFile, "follow": true}}}},
			kwokResource{"kwok.x-k8s.io/v1alpha1", "ClusterAttach", all,
				map[string]any{"attaches": []any{map[string]any{"logsFile": attachFile}}}},
			kwokResource{"kwok.x-k8s.io/v1alpha1", "ClusterExec", all,
				map[string]any{"execs": []any{map[string]any{"local": map[string]any{}}}}},
			kwokResource{"kwok.x-k8s.io/v1alpha1", "ClusterPortForward", all,
				map[string]any{"forwards": []any{forward}}},
		)
	}
	var out []byte
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	return out, nil
}
