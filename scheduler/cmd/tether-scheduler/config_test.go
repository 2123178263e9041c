package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/scheduler/plugins/memberfit"
)

// onlyScheduler is docs/scheduler.md's configuration for tether-scheduler as the host's only scheduler.
const onlyScheduler = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: KUBECONFIG
leaderElection:
  leaderElect: false
profiles:
- schedulerName: default-scheduler
  plugins:
    preFilter:
      enabled: [{name: MemberFit}]
    filter:
      enabled: [{name: MemberFit}]
    score:
      enabled: [{name: MemberFit, weight: 5}]
  pluginConfig:
  - name: MemberFit
    args: {nodePrefix: tether-, keepLabelKeys: []}
`

// TestConfigurations builds a scheduler through kube-scheduler's own Setup from the sandbox's configuration (a
// second profile) and from the only-scheduler one, and finds MemberFit at PreFilter, Filter and Score (weight 5);
// a misspelt arg stops it.
func TestConfigurations(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
	for _, tc := range []struct {
		name, config, profile, wantErr string
	}{
		{"second profile", sandbox.SchedulerConfig(kubeconfig, 50, 100), api.SchedulerName, ""},
		{"only scheduler", strings.ReplaceAll(onlyScheduler, "KUBECONFIG", kubeconfig), "default-scheduler", ""},
		{"misspelt arg", strings.ReplaceAll(strings.ReplaceAll(onlyScheduler, "KUBECONFIG", kubeconfig), "nodePrefix", "nodePrefx"), "", "nodePrefx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			writeFile(t, path, tc.config)
			opts := options.NewOptions()
			opts.ConfigFile = path
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			opts.SecureServing.Listener = ln
			_, sched, err := app.Setup(t.Context(), opts, app.WithPlugin(memberfit.Name, memberfit.New))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Setup: %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			prof, ok := sched.Profiles[tc.profile]
			if !ok {
				t.Fatalf("no profile %s", tc.profile)
			}
			p := prof.ListPlugins()
			has := func(set config.PluginSet, weight int32) bool {
				return slices.ContainsFunc(set.Enabled, func(pl config.Plugin) bool { return pl.Name == memberfit.Name && (weight == 0 || pl.Weight == weight) })
			}
			if !has(p.PreFilter, 0) || !has(p.Filter, 0) || !has(p.Score, 5) {
				t.Errorf("MemberFit missing: preFilter %v, filter %v, score %v", p.PreFilter.Enabled, p.Filter.Enabled, p.Score.Enabled)
			}
			// The default plugins stay on beside it.
			if !slices.ContainsFunc(p.Filter.Enabled, func(pl config.Plugin) bool { return pl.Name == "NodeResourcesFit" }) {
				t.Errorf("NodeResourcesFit is gone from the filter plugins: %v", p.Filter.Enabled)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
