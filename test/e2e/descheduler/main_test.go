// Package descheduler_test runs tether-descheduler (the MemberUnschedulable plugin) against the harness: a pod its
// member cannot place moves to a member whose fragments fit, and stays where it is when none fits, when a
// PodDisruptionBudget forbids it, in a dry run, and when it is not stuck in a member at all.
package descheduler_test

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

// Policy of the suite: the sandbox's, with a shorter wait and cool-down so that the tests see both ends.
// TETHER_E2E_UNSCHEDULABLE_FOR=30s measures test 1's figure with the sandbox's default instead.
var (
	unschedulableFor = durationEnv("TETHER_E2E_UNSCHEDULABLE_FOR", 10*time.Second)
	avoidFor         = 45 * time.Second
)

func durationEnv(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func TestMain(m *testing.M) { os.Exit(framework.RunWith(m, &env, startDescheduler)) }

// startDescheduler builds tether-descheduler and runs it with the suite's policy; restore stops it and starts again
// what ran before (a sandbox's own), if anything.
func startDescheduler(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	restore = func() error { return nil }
	repo, err := sandbox.FindRepoRoot(".")
	if err != nil {
		return restore, err
	}
	dir, err := os.MkdirTemp("", "tether-e2e-descheduler-")
	if err != nil {
		return restore, err
	}
	bin := filepath.Join(dir, sandbox.TetherDescheduler)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+sandbox.TetherDescheduler)
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return restore, fmt.Errorf("build %s: %w\n%s", sandbox.TetherDescheduler, err, out)
	}
	policy, err := e.State.WriteDeschedulerPolicy("e2e-"+sandbox.DeschedulerPolicyFile,
		sandbox.DeschedulerPolicy("unschedulableFor: "+unschedulableFor.String(), "avoidFor: "+avoidFor.String()))
	if err != nil {
		return restore, err
	}
	var previous []string
	if p := e.State.Process(sandbox.TetherDescheduler); p != nil && sandbox.ProcessRunning(p) {
		previous = slices.Clone(p.Args)
		if err := e.State.StopProcess(sandbox.TetherDescheduler, syscall.SIGTERM); err != nil {
			return restore, err
		}
	}
	port, err := sandbox.FreePort()
	if err != nil {
		return restore, err
	}
	restore = func() error {
		err := e.State.StopProcess(sandbox.TetherDescheduler, syscall.SIGTERM)
		if previous != nil {
			_, serr := e.State.StartProcess(sandbox.TetherDescheduler, previous...)
			err = errors.Join(err, serr)
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	if _, err := e.State.StartProcess(sandbox.TetherDescheduler, e.State.DeschedulerArgs(bin, policy, port)...); err != nil {
		return restore, err
	}
	return restore, waitCycles(ctx, e, 1, time.Minute)
}

// cycleLine is what the upstream descheduler logs (at -v 1) at the end of every descheduling cycle.
const cycleLine = "Number of evictions/requests"

// cycles counts the descheduling cycles in tether-descheduler's log.
func cycles(e *framework.Env) (int, error) {
	p := e.State.Process(sandbox.TetherDescheduler)
	if p == nil {
		return 0, errors.New("tether-descheduler is not running")
	}
	return countLines(p.Log, cycleLine)
}

// waitCycles waits until n more descheduling cycles have ended.
func waitCycles(ctx context.Context, e *framework.Env, n int, timeout time.Duration) error {
	start, err := cycles(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d descheduling cycles not within %s (see %s)", n, timeout, e.State.Process(sandbox.TetherDescheduler).Log)
		case <-tick.C:
			c, err := cycles(e)
			if err != nil {
				return err
			}
			if c >= start+n {
				return nil
			}
		}
	}
}
