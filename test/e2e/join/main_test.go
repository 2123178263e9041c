// Package join_test runs `tetherctl join`, `status` and `leave` as a user would, against the harness: members join
// through member Secrets only (tether-node runs without --member flags for the suite), by kubeconfig and by API
// address, token and CA; the member identity is least privilege; leave leaves nothing of Tether behind.
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
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var (
	env *framework.Env
	// tetherctl is the binary built from this checkout for the suite.
	tetherctl string
)

func TestMain(m *testing.M) { os.Exit(framework.RunWith(m, &env, setup)) }

// setup builds tetherctl, and replaces the running tether-node by one with the same arguments but no member flags;
// restore puts the previous one back.
func setup(ctx context.Context, e *framework.Env) (restore func() error, err error) {
	restore = func() error { return nil }
	repo, err := sandbox.FindRepoRoot(".")
	if err != nil {
		return restore, err
	}
	dir, err := os.MkdirTemp("", "tether-e2e-join-")
	if err != nil {
		return restore, err
	}
	tetherctl = filepath.Join(dir, "tetherctl")
	build := exec.CommandContext(ctx, "go", "build", "-o", tetherctl, "./cmd/tetherctl")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return restore, fmt.Errorf("build tetherctl: %w\n%s", err, out)
	}
	p := e.State.Process(sandbox.TetherNode)
	if p == nil {
		return restore, errors.New("no tether-node in the harness")
	}
	previous := slices.Clone(p.Args)
	if err := e.State.StopProcess(sandbox.TetherNode, syscall.SIGTERM); err != nil {
		return restore, err
	}
	restore = func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		// What a failed test left joined goes first, with tether-node's own cleanup, so that the flags of the
		// previous tether-node do not meet a member Secret of the same name.
		err := removeMemberSecrets(cctx, e)
		err = errors.Join(err, e.State.StopProcess(sandbox.TetherNode, syscall.SIGTERM))
		err = errors.Join(err, deleteVirtualNodes(cctx, e))
		if _, serr := e.State.StartProcess(sandbox.TetherNode, previous...); serr != nil {
			err = errors.Join(err, serr)
		} else {
			err = errors.Join(err, e.State.WaitVirtualNodes(cctx, time.Minute))
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	// The nodes the flags served stay registered after tether-node stops: join refuses a node no member Secret
	// registers.
	if err := deleteVirtualNodes(ctx, e); err != nil {
		return restore, err
	}
	if _, err := e.State.StartProcess(sandbox.TetherNode, withoutMemberFlags(previous)...); err != nil {
		return restore, err
	}
	return restore, nil
}

// withoutMemberFlags drops --member and --member-kubelet-port (and their values) from tether-node's arguments.
func withoutMemberFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--member" || a == "--member-kubelet-port":
			i++ // and its value
		case strings.HasPrefix(a, "--member=") || strings.HasPrefix(a, "--member-kubelet-port="):
		default:
			out = append(out, a)
		}
	}
	return out
}

// deleteVirtualNodes deletes the members' virtual nodes and waits until they are gone.
func deleteVirtualNodes(ctx context.Context, e *framework.Env) error {
	nodes := e.Host.Client.CoreV1().Nodes()
	for _, m := range e.Members {
		if err := nodes.Delete(ctx, api.NodeName(api.DefaultNodePrefix, m.Name), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, m := range e.Members {
			if _, err := nodes.Get(ctx, api.NodeName(api.DefaultNodePrefix, m.Name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
}

// removeMemberSecrets deletes the member Secrets tetherctl wrote for the harness's members and waits (a minute at
// most) until tether-node removed their nodes.
func removeMemberSecrets(ctx context.Context, e *framework.Env) error {
	secrets := e.Host.Client.CoreV1().Secrets(api.DefaultNamespace)
	removed := false
	for _, m := range e.Members {
		err := secrets.Delete(ctx, api.MemberSecretName(m.Name), metav1.DeleteOptions{})
		switch {
		case err == nil:
			removed = true
		case !apierrors.IsNotFound(err):
			return err
		}
	}
	if !removed {
		return nil
	}
	nodes := e.Host.Client.CoreV1().Nodes()
	// Best effort: restore deletes the nodes afterwards anyway.
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, m := range e.Members {
			if _, err := nodes.Get(ctx, api.NodeName(api.DefaultNodePrefix, m.Name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
	return nil
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
