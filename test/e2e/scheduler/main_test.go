// Package scheduler_test runs tether-scheduler (kube-scheduler with the MemberFit plugin) as a second profile beside
// the harness host's own scheduler: a pod is bound only to a member with a node that fits it, a burst spreads across
// members, a pod no member fits says why, and real nodes schedule as before.
package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.RunWith(m, &env, startScheduler)) }

// startScheduler builds tether-scheduler and runs it with the sandbox's configuration; restore stops it and starts
// again what ran before, if anything.
func startScheduler(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	restore = func() error { return nil }
	repo, err := sandbox.FindRepoRoot(".")
	if err != nil {
		return restore, err
	}
	dir, err := os.MkdirTemp("", "tether-e2e-scheduler-")
	if err != nil {
		return restore, err
	}
	bin := filepath.Join(dir, sandbox.TetherScheduler)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+sandbox.TetherScheduler)
	build.Dir = filepath.Join(repo, "scheduler")
	if out, err := build.CombinedOutput(); err != nil {
		return restore, fmt.Errorf("build %s: %w\n%s", sandbox.TetherScheduler, err, out)
	}
	config, err := e.State.WriteFile("e2e-"+sandbox.SchedulerConfigFile, sandbox.SchedulerConfig(e.State.Host().Kubeconfig, 50, 100))
	if err != nil {
		return restore, err
	}
	var previous []string
	if p := e.State.Process(sandbox.TetherScheduler); p != nil && sandbox.ProcessRunning(p) {
		previous = slices.Clone(p.Args)
		if err := e.State.StopProcess(sandbox.TetherScheduler, syscall.SIGTERM); err != nil {
			return restore, err
		}
	}
	port, err := sandbox.FreePort()
	if err != nil {
		return restore, err
	}
	restore = func() error {
		err := e.State.StopProcess(sandbox.TetherScheduler, syscall.SIGTERM)
		if previous != nil {
			_, serr := e.State.StartProcess(sandbox.TetherScheduler, previous...)
			err = errors.Join(err, serr)
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	if _, err := e.State.StartProcess(sandbox.TetherScheduler, e.State.SchedulerArgs(bin, config, port)...); err != nil {
		return restore, err
	}
	return restore, sandbox.WaitScheduler(ctx, port, time.Minute)
}
