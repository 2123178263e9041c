// Package descheduler_test runs tether-descheduler (the MemberUnschedulable plugin) against the harness: a pod its
// member cannot place moves to a member whose fragments fit, and stays where it is when none fits, when a
// PodDisruptionBudget forbids it, in a dry run, and when it is not stuck in a member at all.
package descheduler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// startDescheduler builds tether-descheduler and runs it as the chart does, with the suite's policy values, a
// descheduling interval of 5 s and -v 1 (its cycle lines); restore stops it and starts again what ran before (a
// sandbox's own), if anything.
func startDescheduler(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	chart, err := sandbox.RenderChart(ctx, e.Helm, filepath.Join(e.Repo, sandbox.ChartDir), sandbox.ChartValues(framework.ChartValues(
		"descheduler.deschedulingInterval=5s",
		"descheduler.memberUnschedulable.unschedulableFor="+unschedulableFor.String(),
		"descheduler.memberUnschedulable.avoidFor="+avoidFor.String())...)...)
	if err != nil {
		return func() error { return nil }, err
	}
	if err := e.State.InstallIdentities(ctx, chart); err != nil {
		return func() error { return nil }, err
	}
	port, err := sandbox.FreePort()
	if err != nil {
		return func() error { return nil }, err
	}
	return e.RunInstead(ctx, sandbox.TetherDescheduler, ".", func(bin string) ([]string, error) {
		return e.State.ChartDeschedulerArgs(ctx, chart, bin, port, "--v", "1")
	}, func(ctx context.Context) error { return waitCycles(ctx, e, 1, time.Minute) })
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
