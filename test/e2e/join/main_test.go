// Package join_test runs `tetherctl join`, `status` and `leave` as a user would, against the harness: members join
// through member Secrets only (the harness's members leave first), by kubeconfig and by API address, token and CA; the member identity is least privilege; leave leaves nothing of Tether behind.
package join_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var (
	env *framework.Env
	// tetherctl is the binary built from this checkout for the suite.
	tetherctl string
)

func TestMain(m *testing.M) { os.Exit(framework.RunWith(m, &env, setup)) }

// setup builds tetherctl and has the harness's members leave (the harness joined them with tetherctl), so that the
// suite starts with none; restore has what is left leave, and joins them again as the harness did.
func setup(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	restore = func() error { return nil }
	dir, err := os.MkdirTemp("", "tether-e2e-join-")
	if err != nil {
		return restore, err
	}
	tetherctl = filepath.Join(dir, "tetherctl")
	build := exec.CommandContext(ctx, "go", "build", "-o", tetherctl, "./cmd/tetherctl")
	build.Dir = e.Repo
	if out, err := build.CombinedOutput(); err != nil {
		return restore, fmt.Errorf("build tetherctl: %w\n%s", err, out)
	}
	kubeletPort, err := e.KubeletPort()
	if err != nil {
		return restore, err
	}
	restore = func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		err := leaveAll(cctx, e)
		err = errors.Join(err, e.State.JoinMembers(cctx, tetherctl, kubeletPort))
		err = errors.Join(err, e.State.WaitVirtualNodes(cctx, time.Minute))
		return errors.Join(err, os.RemoveAll(dir))
	}
	return restore, leaveAll(ctx, e)
}

// leaveAll has every member of the harness that is joined leave, with `tetherctl leave --force`.
func leaveAll(ctx context.Context, e *framework.Env) error {
	var errs []error
	for _, m := range e.Members {
		_, err := e.Host.Client.CoreV1().Secrets(api.DefaultNamespace).Get(ctx, api.MemberSecretName(m.Name), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		cmd := exec.CommandContext(ctx, tetherctl, "leave", m.Name, "--member-kubeconfig", m.Kubeconfig,
			"--kubeconfig", e.Host.Kubeconfig, "--force")
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("tetherctl leave %s: %w\n%s", m.Name, err, out))
		}
	}
	return errors.Join(errs...)
}

// result is what one tetherctl run printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
}

// runTetherctl runs tetherctl with args against the harness's host (four minutes at most).
func runTetherctl(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tetherctl, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The host comes from $KUBECONFIG, as a user's would.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Host.Kubeconfig)
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("tetherctl %s: %v\n%s%s", shown(args), ctx.Err(), res.stdout, res.stderr)
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("tetherctl %s: %v", shown(args), err)
	}
	return res
}

// mustTetherctl runs tetherctl and fails the test unless it exits 0; it returns stdout.
func mustTetherctl(t *testing.T, args ...string) string {
	t.Helper()
	res := runTetherctl(t, args...)
	if res.code != 0 {
		t.Fatalf("tetherctl %s: exit %d\n%s%s", shown(args), res.code, res.stdout, res.stderr)
	}
	t.Logf("tetherctl %s:\n%s", shown(args), res.stdout)
	return res.stdout
}

// shown is args for a log line, with the value of --token hidden.
func shown(args []string) string {
	out := slices.Clone(args)
	for i := range out {
		if i > 0 && out[i-1] == "--token" {
			out[i] = "<token>"
		}
	}
	return strings.Join(out, " ")
}
