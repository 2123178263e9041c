// Package scheduler_test runs tether-scheduler (kube-scheduler with the MemberFit plugin) as a second profile beside
// the harness host's own scheduler: a pod is bound only to a member with a node that fits it, a burst spreads across
// members, a pod no member fits says why, and real nodes schedule as before.
package scheduler_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.RunWith(m, &env, startScheduler)) }

// startScheduler builds tether-scheduler and runs it as the chart does (kube-scheduler's default client limits);
// restore stops it and starts again what ran before, if anything.
func startScheduler(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	port, err := sandbox.FreePort()
	if err != nil {
		return func() error { return nil }, err
	}
	return e.RunInstead(ctx, sandbox.TetherScheduler, "scheduler", func(bin string) ([]string, error) {
		return e.State.ChartSchedulerArgs(ctx, e.Chart, bin, port, 50, 100)
	}, func(ctx context.Context) error { return sandbox.WaitScheduler(ctx, port, time.Minute) })
}
