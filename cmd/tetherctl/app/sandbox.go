// Package app holds tetherctl's commands.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
)

// NewCommand returns tetherctl's root command.
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tetherctl",
		Short:         "Operate Tether: a local sandbox of host and member clusters",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSandboxCommand())
	root.AddCommand(newJoinCommand(), newLeaveCommand(), newStatusCommand())
	return root
}

type sandboxOptions struct {
	dir      string
	repo     string
	cacheDir string
}

// Ports of the sandbox's Tether processes on 127.0.0.1: tether-node's kubelet API, tether-webhook and its health
// endpoints.
const (
	sandboxKubeletPort       = 10250
	sandboxWebhookPort       = 9443
	sandboxWebhookHealthPort = 9444
	// tether-descheduler's metrics and health (https).
	sandboxDeschedulerPort = 9445
	// tether-scheduler's metrics and health (https).
	sandboxSchedulerPort = 9446
)

// demoNamespace is the sandbox's namespace whose pods are offloaded (label tether.io/offload=enabled).
const demoNamespace = "demo"

func (o *sandboxOptions) addFlags(cmd *cobra.Command) {
	defDir := os.Getenv("SANDBOX_DIR")
	if defDir == "" {
		defDir = ".sandbox"
	}
	cmd.Flags().StringVar(&o.dir, "dir", defDir, "folder of the sandbox's kubeconfigs and state ($SANDBOX_DIR)")
	cmd.Flags().StringVar(&o.repo, "repo", "", "Tether's repository root: the pins of hack/tools (control plane, helm) and charts/tether (default: found above the working directory)")
	cmd.Flags().StringVar(&o.cacheDir, "cache-dir", "", "where built control-plane binaries are kept (default $TETHER_CACHE_DIR or ~/.cache/tether)")
}

// repoRoot is --repo, else the repository above the working directory.
func (o *sandboxOptions) repoRoot() (string, error) {
	if o.repo != "" {
		return filepath.Abs(o.repo)
	}
	return sandbox.FindRepoRoot(".")
}

func (o *sandboxOptions) tools(ctx context.Context, log io.Writer) (*sandbox.Tools, error) {
	repo, err := o.repoRoot()
	if err != nil {
		return nil, err
	}
	cache := o.cacheDir
	if cache == "" {
		if cache, err = sandbox.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	return sandbox.EnsureTools(ctx, repo, cache, log)
}

func newSandboxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "A local host cluster and member clusters on this machine, offline",
	}
	cmd.AddCommand(newSandboxUpCommand(), newSandboxDownCommand(), newSandboxStatusCommand(), newSandboxToolsCommand())
	return cmd
}

func newSandboxUpCommand() *cobra.Command {
	var (
		o                sandboxOptions
		members, nodes   int
		node             sandbox.NodeConfig
		memberLabels     []string
		disableQPSLimits bool
		binDir           string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox (idempotent: a running sandbox is left as it is)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if members < 1 || nodes < 1 {
				return fmt.Errorf("--members and --nodes must be at least 1")
			}
			cfg := sandbox.DefaultConfig(o.dir)
			cfg.Members = sandbox.DefaultMembers(members, nodes, node)
			for _, spec := range memberLabels {
				if err := cfg.ParseMemberLabels(spec); err != nil {
					return err
				}
			}
			cfg.DisableQPSLimits = disableQPSLimits
			cfg.Log = out
			if binDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binDir = filepath.Dir(exe)
			}
			binDir, err := filepath.Abs(binDir)
			if err != nil {
				return err
			}
			repo, err := o.repoRoot()
			if err != nil {
				return err
			}
			if st, err := sandbox.Load(o.dir); err == nil && sandbox.Healthy(ctx, st) == nil {
				fmt.Fprintf(out, "a sandbox is already up in %s\n", st.Dir)
				if err := ensureTether(ctx, out, st, binDir, repo); err != nil {
					return err
				}
				printTry(out, st)
				return nil
			}
			start := time.Now()
			tools, err := o.tools(ctx, out)
			if err != nil {
				return err
			}
			cfg.Tools = tools
			st, err := sandbox.Up(ctx, cfg)
			if errors.Is(err, sandbox.ErrAlreadyUp) {
				fmt.Fprintf(out, "a sandbox is already up in %s\n", st.Dir)
				printTry(out, st)
				return nil
			}
			if err != nil {
				return fmt.Errorf("sandbox did not come up, nothing is left running: %w", err)
			}
			if err := linkKubectl(st); err != nil {
				return err
			}
			if err := ensureTether(ctx, out, st, binDir, repo); err != nil {
				// Leave nothing half-started behind.
				downCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
				defer cancel()
				return errors.Join(err, sandbox.Down(downCtx, st.Dir))
			}
			fmt.Fprintf(out, "sandbox up in %s\n", time.Since(start).Round(time.Second))
			printTry(out, st)
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().IntVar(&members, "members", 2, "number of member clusters (named m1, m2, …)")
	cmd.Flags().IntVar(&nodes, "nodes", 3, "fake kwok nodes per member")
	cmd.Flags().StringVar(&node.CPU, "node-cpu", sandbox.DefaultNodeCPU, "CPU of each member node")
	cmd.Flags().StringVar(&node.Memory, "node-memory", sandbox.DefaultNodeMemory, "memory of each member node")
	cmd.Flags().IntVar(&node.Pods, "node-pods", sandbox.DefaultNodePods, "pod capacity of each member node")
	cmd.Flags().StringArrayVar(&memberLabels, "member-labels", nil, "extra node labels, MEMBER=k=v[,k=v] for all nodes of a member or MEMBER/INDEX=k=v for one (repeatable)")
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "folder of the tether-node, tether-webhook, tether-descheduler, tether-scheduler and tetherctl binaries to run (default: beside tetherctl)")
	cmd.Flags().BoolVar(&disableQPSLimits, "disable-qps-limits", false, "lift client rate limits and API priority and fairness in every control plane (benchmarks)")
	return cmd
}

// sandboxChartValues are the chart values of the sandbox, on top of sandbox.ChartValues: pods stuck in their member
// move after 10 s, looked for every 5 s, so that a demo sees it happen within half a minute.
var sandboxChartValues = []string{"descheduler.deschedulingInterval=5s", "descheduler.memberUnschedulable.unschedulableFor=10s"}

// ensureTether installs Tether as charts/tether would (its ServiceAccounts and roles in the host, members joined with
// `tetherctl join`), starts tether-node, tether-webhook, tether-descheduler and tether-scheduler with the chart's
// arguments and identities unless they run, and waits until they work. The chart's webhook sends offloaded pods to
// tether-scheduler's profile.
func ensureTether(ctx context.Context, out io.Writer, st *sandbox.State, binDir, repo string) error {
	bin := func(name string) (string, error) {
		p := filepath.Join(binDir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w (run make build)", name, err)
		}
		return p, nil
	}
	tetherctl, err := bin("tetherctl")
	if err != nil {
		return err
	}
	helm, err := sandbox.EnsureHelm(ctx, repo, out)
	if err != nil {
		return err
	}
	chart, err := st.InstallChart(ctx, helm, repo, sandboxChartValues...)
	if err != nil {
		return err
	}
	if err := st.JoinMembers(ctx, tetherctl, sandboxKubeletPort); err != nil {
		return err
	}
	// The host's scheduler has kube-scheduler's default client limits, or none with --disable-qps-limits: the same here.
	qps, burst := 50.0, 100
	if st.QPSLimitsDisabled {
		qps, burst = 5000, 10000
	}
	procs := []struct {
		name string
		args func(bin string) ([]string, error)
	}{
		{sandbox.TetherNode, func(b string) ([]string, error) { return st.ChartNodeArgs(ctx, chart, b, sandboxKubeletPort) }},
		{sandbox.TetherWebhook, func(b string) ([]string, error) {
			return st.ChartWebhookArgs(ctx, chart, b, sandboxWebhookPort, sandboxWebhookHealthPort)
		}},
		{sandbox.TetherDescheduler, func(b string) ([]string, error) {
			return st.ChartDeschedulerArgs(ctx, chart, b, sandboxDeschedulerPort)
		}},
		{sandbox.TetherScheduler, func(b string) ([]string, error) {
			return st.ChartSchedulerArgs(ctx, chart, b, sandboxSchedulerPort, qps, burst)
		}},
	}
	for _, p := range procs {
		if cur := st.Process(p.name); cur != nil && sandbox.ProcessRunning(cur) {
			continue
		}
		b, err := bin(p.name)
		if err != nil {
			return err
		}
		args, err := p.args(b)
		if err != nil {
			return err
		}
		if _, err := st.StartProcess(p.name, args...); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s started (log: %s)\n", p.name, st.Process(p.name).Log)
	}
	if err := st.WaitVirtualNodes(ctx, time.Minute); err != nil {
		return fmt.Errorf("virtual nodes not Ready (see %s): %w", st.Process(sandbox.TetherNode).Log, err)
	}
	if err := st.EnsureNamespace(ctx, demoNamespace, map[string]string{api.LabelOffload: api.OffloadEnabled}); err != nil {
		return err
	}
	if err := st.EnsureStorageClass(ctx); err != nil {
		return err
	}
	if err := st.WaitWebhook(ctx, demoNamespace, time.Minute); err != nil {
		return fmt.Errorf("webhook not answering (see %s): %w", st.Process(sandbox.TetherWebhook).Log, err)
	}
	if err := sandbox.WaitScheduler(ctx, sandboxSchedulerPort, time.Minute); err != nil {
		return fmt.Errorf("tether-scheduler not healthy (see %s): %w", st.Process(sandbox.TetherScheduler).Log, err)
	}
	return nil
}

// demoManifest is a Deployment that runs through the virtual nodes, written into the sandbox for printTry.
const demoManifest = "demo.yaml"

const demoDeployment = `# In namespace demo (label tether.io/offload=enabled) tether-webhook adds the virtual nodes' toleration, parks
# disktype=ssd and sends the pods to tether-scheduler, which binds them to tether-m2: only member m2 has an ssd node.
# m2's own scheduler puts them there.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
  namespace: demo
spec:
  replicas: 4
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      nodeSelector: {disktype: ssd}
      containers:
      - name: app
        image: registry.example/demo:1
        resources:
          requests: {cpu: 100m, memory: 64Mi}
`

// linkKubectl puts the kubectl the sandbox was built with at <dir>/bin/kubectl, for the commands printTry shows,
// and the demo manifest beside it.
func linkKubectl(st *sandbox.State) error {
	if err := os.WriteFile(filepath.Join(st.Dir, demoManifest), []byte(demoDeployment), 0o644); err != nil {
		return err
	}
	bin := filepath.Join(st.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	link := filepath.Join(bin, "kubectl")
	_ = os.Remove(link)
	return os.Symlink(st.Kubectl, link)
}

func printTry(out io.Writer, st *sandbox.State) {
	// The default sandbox's ssd node is in its last member.
	ssd := st.Members()[len(st.Members())-1]
	fmt.Fprintf(out, `
  export KUBECONFIG=%s PATH=%s:$PATH

Try:
  kubectl get nodes -L tether.io/member              # the host: one virtual node per member
  kubectl apply -f %s                                 # a Deployment in the offloaded namespace demo
  kubectl -n demo get pods -o wide; kubectl --kubeconfig %s -n demo get pods -o wide   # on tether-%s in the host, on the ssd node in %s

Stop it with: make sandbox-down
`, st.Host().Kubeconfig, filepath.Join(st.Dir, "bin"), filepath.Join(st.Dir, demoManifest), ssd.Kubeconfig, ssd.Name, ssd.Name)
}

func newSandboxDownCommand() *cobra.Command {
	var o sandboxOptions
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop everything the sandbox started and remove its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = os.RemoveAll(filepath.Join(o.dir, "bin"))
			_ = os.Remove(filepath.Join(o.dir, demoManifest))
			if _, err := sandbox.Load(o.dir); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "no sandbox in %s\n", o.dir)
				return nil
			}
			// Finish the cleanup even when interrupted: a half-stopped sandbox is worse than a slow stop.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 3*time.Minute)
			defer cancel()
			if err := sandbox.Down(ctx, o.dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sandbox in %s stopped\n", o.dir)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newSandboxStatusCommand() *cobra.Command {
	var o sandboxOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Say whether the sandbox is up and where its kubeconfigs are",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			st, err := sandbox.Load(o.dir)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no sandbox in %s", o.dir)
			}
			if err != nil {
				return err
			}
			if err := sandbox.Healthy(cmd.Context(), st); err != nil {
				return fmt.Errorf("sandbox in %s is not healthy (run make sandbox-down): %w", st.Dir, err)
			}
			var names []string
			for _, c := range st.Clusters {
				names = append(names, c.Name)
			}
			fmt.Fprintf(out, "sandbox up in %s since %s: %s\n", st.Dir, st.Started.Format(time.RFC3339), strings.Join(names, ", "))
			for _, c := range st.Clusters {
				fmt.Fprintf(out, "  %-6s %s\n", c.Name, c.Kubeconfig)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newSandboxToolsCommand() *cobra.Command {
	var o sandboxOptions
	cmd := &cobra.Command{
		Use:   "tools",
		Short: "Build (or find in the cache) the control-plane binaries and print their folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := o.tools(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Dir)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}
