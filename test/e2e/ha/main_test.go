// Package ha_test runs tether-node as two replicas with --leader-elect against the harness: only the holder of the
// tether-node Lease serves, a standby takes over within 15 s of the leader's SIGKILL during a burst of pods, the
// virtual nodes stay Ready throughout, and no pod is lost or duplicated.
package ha_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var (
	env      *framework.Env
	replicas []*replica
)

// replica is one tether-node of the pair: its process name in the harness state (also its identity in the
// Lease), its kubelet API port (the first member's; member i uses kubeletPort+i) and its metrics address.
type replica struct {
	name        string
	kubeletPort int
	metrics     string
	args        []string
}

func TestMain(m *testing.M) { os.Exit(framework.RunWith(m, &env, startReplicas)) }

// portFlags are the flags of the original arguments each replica sets for itself.
var portFlags = []string{"--metrics-address", "--debug-address", "--leader-elect-identity"}

// startReplicas stops the harness's tether-node and starts two replicas with its arguments, leader election, and
// kubelet and metrics ports of their own; restore stops them and starts the original again.
func startReplicas(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	restore = func() error { return nil }
	orig := e.State.Process(sandbox.TetherNode)
	if orig == nil {
		return restore, errors.New("the harness runs no tether-node")
	}
	original := slices.Clone(orig.Args)
	// The chart as it is installed for replicas > 1: its Role on the leader Lease.
	chart, err := sandbox.RenderChart(ctx, e.Helm, filepath.Join(e.Repo, sandbox.ChartDir), sandbox.ChartValues(framework.ChartValues("node.replicas=2")...)...)
	if err != nil {
		return restore, err
	}
	if err := e.State.InstallIdentities(ctx, chart); err != nil {
		return restore, err
	}
	if err := e.State.StopProcess(sandbox.TetherNode, syscall.SIGTERM); err != nil {
		return restore, err
	}
	restore = func() error {
		var errs []error
		for _, r := range replicas {
			if p := e.State.Process(r.name); p != nil && sandbox.ProcessRunning(p) {
				errs = append(errs, e.State.StopProcess(r.name, syscall.SIGTERM))
			}
		}
		if _, err := e.State.StartProcess(sandbox.TetherNode, original...); err != nil {
			return errors.Join(append(errs, err)...)
		}
		return errors.Join(append(errs, e.State.WaitVirtualNodes(context.WithoutCancel(ctx), time.Minute))...)
	}
	base := withoutFlags(original, portFlags)
	// Both replicas take the harness's kubelet API ports (the members' Secrets name theirs): only the leader serves
	// them, as replicas of the chart's Deployment share theirs on pod IPs of their own.
	kubelet, err := e.KubeletPort()
	if err != nil {
		return restore, err
	}
	var taken []int
	for i := range 2 {
		metrics, err := freePorts(1, taken)
		if err != nil {
			return restore, err
		}
		taken = append(taken, metrics, metrics)
		r := &replica{name: fmt.Sprintf("tether-node-ha-%d", i), kubeletPort: kubelet, metrics: "127.0.0.1:" + strconv.Itoa(metrics)}
		r.args = append(slices.Clone(base), "--metrics-address", r.metrics, "--leader-elect", "--leader-elect-identity", r.name)
		replicas = append(replicas, r)
	}
	for _, r := range replicas {
		if _, err := e.State.StartProcess(r.name, r.args...); err != nil {
			return restore, err
		}
	}
	return restore, e.State.WaitVirtualNodes(ctx, time.Minute)
}

// withoutFlags drops each of flags with its value ("--flag value" or "--flag=value") from args.
func withoutFlags(args, flags []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if slices.Contains(flags, a) {
			i++ // and its value
			continue
		}
		if slices.ContainsFunc(flags, func(f string) bool { return len(a) > len(f) && a[:len(f)+1] == f+"=" }) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// freePorts finds n consecutive free ports whose range does not meet the ranges in taken (pairs of first and last).
func freePorts(n int, taken []int) (int, error) {
	for range 20 {
		first, err := sandbox.FreePorts(n)
		if err != nil {
			return 0, err
		}
		clash := false
		for i := 0; i+1 < len(taken); i += 2 {
			if first <= taken[i+1] && taken[i] <= first+n-1 {
				clash = true
			}
		}
		if !clash {
			return first, nil
		}
	}
	return 0, fmt.Errorf("no %d free ports apart from %v", n, taken)
}
