package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// recipe changes when the way tools are built changes, so that the cache key changes with it.
const recipe = "4"

// Tools are the binaries the harness runs. All paths are absolute.
type Tools struct {
	Dir                   string
	KubeApiserver         string
	KubeControllerManager string
	KubeScheduler         string
	Kubectl               string
	Etcd                  string
	Kwok                  string
	Kwokctl               string
	// MetricsServer runs in members (metrics.k8s.io); MetricsServerManifests is its kustomize folder.
	MetricsServer          string
	MetricsServerManifests string
	// KubernetesVersion is the pinned k8s.io/kubernetes version, e.g. v1.36.3.
	KubernetesVersion string
}

// toolModule is one module under hack/tools and the packages built from it.
type toolModule struct {
	dir  string
	pkgs []string
}

// toolSet is a group of tool modules cached under one key: <cache>/tools/<prefix><key>. The control plane and the
// metrics-server are separate sets, so adding or moving one does not rebuild the other.
type toolSet struct {
	prefix  string
	modules []toolModule
	// ldflags stamps a version into the binaries of one module (kwokctl reads `--version` to choose flags).
	ldflags func(ctx context.Context, moduleDir string) (string, error)
	// after runs in the build folder once the binaries are there.
	after func(ctx context.Context, toolsRoot, buildDir string) error
}

// pinModule is the one module under hack/tools every harness binary is built from: the control plane, etcd, kwok
// and the metrics-server share its dependency versions, so that a cold build compiles each dependency once (the
// main and scheduler modules hold the same versions: TestMainSharesControlPlanePins).
const pinModule = "kubernetes"

var controlPlane = toolSet{
	modules: []toolModule{
		{pinModule, []string{
			"k8s.io/kubernetes/cmd/kube-apiserver",
			"k8s.io/kubernetes/cmd/kube-controller-manager",
			"k8s.io/kubernetes/cmd/kube-scheduler",
			"k8s.io/kubernetes/cmd/kubectl",
			"./cmd/etcd",
			"sigs.k8s.io/kwok/cmd/kwok",
			"sigs.k8s.io/kwok/cmd/kwokctl",
		}},
	},
	ldflags: func(ctx context.Context, dir string) (string, error) {
		v, err := output(ctx, dir, "go", "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
		return kubeVersionLDFlags(v), err
	},
}

// metricsServer runs in members (kwokctl starts it) so that they serve metrics.k8s.io; its kustomize manifests are
// copied next to the binary, since kwokctl would otherwise download them. It is linked apart from the control
// plane, with its own version stamped into client-go.
var metricsServer = toolSet{
	prefix:  "metrics-server-",
	modules: []toolModule{{pinModule, []string{"sigs.k8s.io/metrics-server/cmd/metrics-server"}}},
	ldflags: func(ctx context.Context, dir string) (string, error) {
		v, err := output(ctx, dir, "go", "list", "-m", "-f", "{{.Version}}", "sigs.k8s.io/metrics-server")
		return "-X k8s.io/client-go/pkg/version.gitVersion=" + v, err
	},
	after: func(ctx context.Context, toolsRoot, buildDir string) error {
		src, err := output(ctx, filepath.Join(toolsRoot, pinModule), "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/metrics-server")
		if err != nil {
			return err
		}
		return os.CopyFS(filepath.Join(buildDir, "metrics-server-manifests"), os.DirFS(filepath.Join(src, "manifests", "base")))
	},
}

// DefaultCacheDir is $TETHER_CACHE_DIR, or tether/ under the user's cache directory (~/.cache/tether).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("TETHER_CACHE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory (set TETHER_CACHE_DIR): %w", err)
	}
	return filepath.Join(d, "tether"), nil
}

// EnsureTools returns the binaries pinned by the modules under <repoRoot>/hack/tools, building them into
// <cacheDir>/tools/<key> first if that folder does not hold them yet. The key is a hash of the pins (go.mod,
// go.sum and sources of each tools module), the Go version and the build recipe, so a changed pin rebuilds and
// anything else reuses. Concurrent callers (a sandbox and a test run) wait for each other through a file lock.
func EnsureTools(ctx context.Context, repoRoot, cacheDir string, log io.Writer) (*Tools, error) {
	if log == nil {
		log = io.Discard
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("step tools: the go command is not on PATH (install Go 1.26): %w", err)
	}
	toolsRoot := filepath.Join(repoRoot, "hack", "tools")
	goVersion, err := output(ctx, toolsRoot, goBin, "env", "GOVERSION")
	if err != nil {
		return nil, fmt.Errorf("step tools: go env GOVERSION: %w", err)
	}
	k8sVersion, err := output(ctx, filepath.Join(toolsRoot, pinModule), goBin, "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	if err != nil {
		return nil, fmt.Errorf("step tools: read the pinned k8s.io/kubernetes version: %w", err)
	}
	cpDir, err := ensureSet(ctx, controlPlane, goBin, goVersion, toolsRoot, cacheDir, log, func(dir string) bool {
		return toolsIn(dir, "", k8sVersion).controlPlaneComplete()
	})
	if err != nil {
		return nil, err
	}
	msDir, err := ensureSet(ctx, metricsServer, goBin, goVersion, toolsRoot, cacheDir, log, func(dir string) bool {
		return executable(filepath.Join(dir, "metrics-server")) && exists(filepath.Join(dir, "metrics-server-manifests", "kustomization.yaml"))
	})
	if err != nil {
		return nil, err
	}
	return toolsIn(cpDir, msDir, k8sVersion), nil
}

// ensureSet returns the cache folder of one tool set, building it first when complete says it is not there.
func ensureSet(ctx context.Context, set toolSet, goBin, goVersion, toolsRoot, cacheDir string, log io.Writer, complete func(string) bool) (string, error) {
	key, err := toolsKey(toolsRoot, goVersion, set.modules)
	if err != nil {
		return "", fmt.Errorf("step tools: hash the pins under %s: %w", toolsRoot, err)
	}
	key = set.prefix + key
	dir := filepath.Join(cacheDir, "tools", key)
	if complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "tools"), 0o755); err != nil {
		return "", fmt.Errorf("step tools: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, "tools", key+".lock"))
	if err != nil {
		return "", fmt.Errorf("step tools: %w", err)
	}
	defer unlock()
	if complete(dir) { // another process built them while we waited
		return dir, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(cacheDir, "tools"), key+".tmp-")
	if err != nil {
		return "", fmt.Errorf("step tools: %w", err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, "building %s into %s (first run only: several minutes)\n", key, dir)
	for _, m := range set.modules {
		modDir := filepath.Join(toolsRoot, m.dir)
		logPath := filepath.Join(cacheDir, "tools", key+"-build-"+m.dir+".log")
		args := []string{"build", "-o", tmp + string(os.PathSeparator)}
		if set.ldflags != nil {
			flags, err := set.ldflags(ctx, modDir)
			if err != nil {
				return "", fmt.Errorf("step tools: %s: %w", m.dir, err)
			}
			if flags != "" {
				args = append(args, "-ldflags", flags)
			}
		}
		args = append(args, m.pkgs...)
		fmt.Fprintf(log, "  go build %s (log: %s)\n", strings.Join(m.pkgs, " "), logPath)
		if err := runLogged(ctx, modDir, logPath, goBin, args...); err != nil {
			return "", fmt.Errorf("step tools: build %s failed, see %s: %w", m.dir, logPath, err)
		}
	}
	if set.after != nil {
		if err := set.after(ctx, toolsRoot, tmp); err != nil {
			return "", fmt.Errorf("step tools: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("step tools: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("step tools: %w", err)
	}
	if !complete(dir) {
		return "", fmt.Errorf("step tools: build finished but binaries are missing in %s", dir)
	}
	return dir, nil
}

func toolsIn(dir, msDir, k8sVersion string) *Tools {
	t := &Tools{
		Dir:                   dir,
		KubeApiserver:         filepath.Join(dir, "kube-apiserver"),
		KubeControllerManager: filepath.Join(dir, "kube-controller-manager"),
		KubeScheduler:         filepath.Join(dir, "kube-scheduler"),
		Kubectl:               filepath.Join(dir, "kubectl"),
		Etcd:                  filepath.Join(dir, "etcd"),
		Kwok:                  filepath.Join(dir, "kwok"),
		Kwokctl:               filepath.Join(dir, "kwokctl"),
		KubernetesVersion:     k8sVersion,
	}
	if msDir != "" {
		t.MetricsServer = filepath.Join(msDir, "metrics-server")
		t.MetricsServerManifests = filepath.Join(msDir, "metrics-server-manifests")
	}
	return t
}

func (t *Tools) controlPlaneComplete() bool {
	for _, p := range []string{t.KubeApiserver, t.KubeControllerManager, t.KubeScheduler, t.Kubectl, t.Etcd, t.Kwok, t.Kwokctl} {
		if !executable(p) {
			return false
		}
	}
	return true
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// kubeVersionLDFlags stamps a real version into the binaries: kwokctl reads `--version` to choose flags.
func kubeVersionLDFlags(v string) string {
	major, minor := "", ""
	if parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	var b strings.Builder
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
			pkg, v, pkg, major, pkg, minor, pkg)
	}
	return strings.TrimSpace(b.String())
}

// toolsKey hashes every file of every tools module (they are small: go.mod, go.sum, a few .go files).
func toolsKey(toolsRoot, goVersion string, modules []toolModule) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\n%s\n", recipe, goVersion)
	for _, m := range modules {
		err := filepath.WalkDir(filepath.Join(toolsRoot, m.dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(toolsRoot, path)
			fmt.Fprintf(h, "%s %d\n", rel, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// lockFile takes an exclusive flock, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		f.Close() // unblocks nothing, but the process is ending
		return nil, ctx.Err()
	}
}

func output(ctx context.Context, dir, name string, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// runLogged runs a command with stdout and stderr appended to logPath. The child gets its own process group, so
// a Ctrl-C in the terminal reaches only us; we stop it through ctx.
func runLogged(ctx context.Context, dir, logPath, name string, args ...string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err = cmd.Run()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return errors.Join(ctxErr, err)
	}
	return err
}

// FindRepoRoot walks up from start to the folder that holds hack/tools (Tether's repository root).
func FindRepoRoot(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "tools", "kubernetes", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no hack/tools above %s: run from Tether's repository", start)
		}
		dir = parent
	}
}
