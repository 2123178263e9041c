package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// metricsServerComponent is kwokctl's name of a member's metrics-server.
const metricsServerComponent = "metrics-server"

// restartDeadMetricsServers starts again, as a process of the harness, each member's metrics-server that kwokctl
// started and that is gone: it reads the apiserver's request-header CA once at start and exits when the apiserver
// does not answer yet, and kwokctl starts it only once (seen under load: no metrics.k8s.io in that member).
func restartDeadMetricsServers(st *State) error {
	for _, c := range st.Members() {
		if err := restartDeadMetricsServer(st, c); err != nil {
			return err
		}
	}
	return nil
}

// restartDeadMetricsServer is restartDeadMetricsServers for one member. Up calls it as soon as the member's
// control plane is up, before the next cluster is created: a dead metrics-server leaves its port free, and the next
// cluster's kwokctl may give that port to one of its own components (seen: m2's etcd on m1's metrics-server port,
// and m1's namespaces then stuck Terminating on the failing metrics.k8s.io discovery).
func restartDeadMetricsServer(st *State, c Cluster) error {
	work := filepath.Dir(c.Logs)
	if alive(filepath.Join(work, "pids", metricsServerComponent+".pid")) {
		return nil
	}
	if p := st.Process(metricsServerComponent + "-" + c.Name); p != nil && ProcessRunning(p) {
		return nil // started again already
	}
	args, err := kwokComponentArgs(filepath.Join(work, "kwok.yaml"), metricsServerComponent)
	if err != nil {
		return fmt.Errorf("%s of %s: %w", metricsServerComponent, c.Name, err)
	}
	if args == nil {
		return nil // the cluster has none (Config.NoMetricsServer)
	}
	_, err = st.StartProcess(metricsServerComponent+"-"+c.Name, args...)
	return err
}

// alive reports whether the process of a kwokctl pid file runs.
func alive(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return true // no pid file: nothing kwokctl started to look after
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && !zombie(pid)
}

// kwokComponentArgs is the command line (binary first) of a component in a cluster's kwok.yaml; nil when the
// cluster has no such component.
func kwokComponentArgs(path, name string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var conf struct {
			Kind       string `json:"kind"`
			Components []struct {
				Name   string   `json:"name"`
				Binary string   `json:"binary"`
				Args   []string `json:"args"`
			} `json:"components"`
		}
		if err := yaml.Unmarshal([]byte(doc), &conf); err != nil || conf.Kind != "KwokctlConfiguration" {
			continue
		}
		for _, c := range conf.Components {
			if c.Name == name && c.Binary != "" {
				return append([]string{c.Binary}, c.Args...), nil
			}
		}
	}
	return nil, nil
}
