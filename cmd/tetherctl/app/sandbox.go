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

	"github.com/tetherkube/tether/test/harness"
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
	return root
}

type sandboxOptions struct {
	dir      string
	repo     string
	cacheDir string
}

// sandboxKubeletPort is where the sandbox's tether-node serves the kubelet API of its virtual nodes.
const sandboxKubeletPort = 10250

func (o *sandboxOptions) addFlags(cmd *cobra.Command) {
	defDir := os.Getenv("SANDBOX_DIR")
	if defDir == "" {
		defDir = ".sandbox"
	}
	cmd.Flags().StringVar(&o.dir, "dir", defDir, "folder of the sandbox's kubeconfigs and state ($SANDBOX_DIR)")
	cmd.Flags().StringVar(&o.repo, "repo", "", "Tether's repository root, which pins the control-plane versions under hack/tools (default: found above the working directory)")
	cmd.Flags().StringVar(&o.cacheDir, "cache-dir", "", "where built control-plane binaries are kept (default $TETHER_CACHE_DIR or ~/.cache/tether)")
}

func (o *sandboxOptions) tools(ctx context.Context, log io.Writer) (*harness.Tools, error) {
	repo := o.repo
	if repo == "" {
		var err error
		if repo, err = harness.FindRepoRoot("."); err != nil {
			return nil, err
		}
	}
	cache := o.cacheDir
	if cache == "" {
		var err error
		if cache, err = harness.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	return harness.EnsureTools(ctx, repo, cache, log)
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
		node             harness.NodeConfig
		memberLabels     []string
		disableQPSLimits bool
		tetherNode       string
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
			cfg := harness.DefaultConfig(o.dir)
			cfg.Members = nil
			for i := range members {
				cfg.Members = append(cfg.Members, harness.UniformMember(fmt.Sprintf("m%d", i+1), nodes, node))
			}
			for _, spec := range memberLabels {
				if err := cfg.ParseMemberLabels(spec); err != nil {
					return err
				}
			}
			cfg.DisableQPSLimits = disableQPSLimits
			cfg.Log = out
			if tetherNode == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				tetherNode = filepath.Join(filepath.Dir(exe), "tether-node")
			}
			var err error
			if _, err = os.Stat(tetherNode); err != nil {
				return fmt.Errorf("tether-node binary: %w (run make build, or give --tether-node)", err)
			}
			if tetherNode, err = filepath.Abs(tetherNode); err != nil {
				return err
			}
			if st, err := harness.Load(o.dir); err == nil && harness.Healthy(ctx, st) == nil {
				fmt.Fprintf(out, "a sandbox is already up in %s\n", st.Dir)
				if err := ensureTetherNode(ctx, out, st, tetherNode); err != nil {
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
			st, err := harness.Up(ctx, cfg)
			if errors.Is(err, harness.ErrAlreadyUp) {
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
			if err := ensureTetherNode(ctx, out, st, tetherNode); err != nil {
				// Leave nothing half-started behind.
				downCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
				defer cancel()
				return errors.Join(err, harness.Down(downCtx, st.Dir))
			}
			fmt.Fprintf(out, "sandbox up in %s\n", time.Since(start).Round(time.Second))
			printTry(out, st)
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().IntVar(&members, "members", 2, "number of member clusters (named m1, m2, …)")
	cmd.Flags().IntVar(&nodes, "nodes", 3, "fake kwok nodes per member")
	cmd.Flags().StringVar(&node.CPU, "node-cpu", harness.DefaultNodeCPU, "CPU of each member node")
	cmd.Flags().StringVar(&node.Memory, "node-memory", harness.DefaultNodeMemory, "memory of each member node")
	cmd.Flags().IntVar(&node.Pods, "node-pods", harness.DefaultNodePods, "pod capacity of each member node")
	cmd.Flags().StringArrayVar(&memberLabels, "member-labels", nil, "extra node labels, MEMBER=k=v[,k=v] for all nodes of a member or MEMBER/INDEX=k=v for one (repeatable)")
	cmd.Flags().StringVar(&tetherNode, "tether-node", "", "tether-node binary to run (default: tether-node beside tetherctl)")
	cmd.Flags().BoolVar(&disableQPSLimits, "disable-qps-limits", false, "lift client rate limits and API priority and fairness in every control plane (benchmarks)")
	return cmd
}

// ensureTetherNode starts tether-node for every member unless it runs, and waits for the virtual nodes.
func ensureTetherNode(ctx context.Context, out io.Writer, st *harness.State, bin string) error {
	if p := st.Process(harness.TetherNode); p == nil || p.Pid == 0 || !harness.ProcessRunning(p) {
		if _, err := st.StartProcess(harness.TetherNode, st.TetherNodeArgs(bin, sandboxKubeletPort)...); err != nil {
			return err
		}
		fmt.Fprintf(out, "tether-node started (log: %s)\n", st.Process(harness.TetherNode).Log)
	}
	if err := st.WaitVirtualNodes(ctx, time.Minute); err != nil {
		return fmt.Errorf("virtual nodes not Ready (see %s): %w", st.Process(harness.TetherNode).Log, err)
	}
	return nil
}

// demoManifest is a Deployment that runs through the virtual nodes, written into the sandbox for printTry.
const demoManifest = "demo.yaml"

const demoDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
spec:
  replicas: 4
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      tolerations:
      - {key: virtual-kubelet.io/provider, operator: Equal, value: tether, effect: NoSchedule}
      containers:
      - name: app
        image: registry.example/demo:1
        resources:
          requests: {cpu: 100m, memory: 64Mi}
`

// linkKubectl puts the kubectl the sandbox was built with at <dir>/bin/kubectl, for the commands printTry shows,
// and the demo manifest beside it.
func linkKubectl(st *harness.State) error {
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

func printTry(out io.Writer, st *harness.State) {
	m1 := st.Members()[0]
	fmt.Fprintf(out, `
  export KUBECONFIG=%s PATH=%s:$PATH

Try:
  kubectl get nodes -L tether.io/member              # the host: one virtual node per member
  kubectl apply -f %s                                 # a Deployment that tolerates the virtual nodes' taint
  kubectl get pods -o wide; kubectl --kubeconfig %s get pods -o wide   # on tether-%s in the host, on kwok nodes in %s

Stop it with: make sandbox-down
`, st.Host().Kubeconfig, filepath.Join(st.Dir, "bin"), filepath.Join(st.Dir, demoManifest), m1.Kubeconfig, m1.Name, m1.Name)
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
			if _, err := harness.Load(o.dir); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "no sandbox in %s\n", o.dir)
				return nil
			}
			// Finish the cleanup even when interrupted: a half-stopped sandbox is worse than a slow stop.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 3*time.Minute)
			defer cancel()
			if err := harness.Down(ctx, o.dir); err != nil {
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
			st, err := harness.Load(o.dir)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no sandbox in %s", o.dir)
			}
			if err != nil {
				return err
			}
			if err := harness.Healthy(cmd.Context(), st); err != nil {
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
