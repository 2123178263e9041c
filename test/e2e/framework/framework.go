// Package framework gives Tether's e2e suites their clusters: it starts a host and members with the harness once
// per `go test` run and stops them afterwards, or reuses running ones when TETHER_E2E_CLUSTERS names the folder
// of their kubeconfigs (a sandbox: TETHER_E2E_CLUSTERS=.sandbox). Tests get typed clients and the real kubectl.
package framework

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
)

// EnvClusters names a folder with a running harness (host.kubeconfig, m1.kubeconfig, … and harness.json) to
// reuse instead of starting one.
const EnvClusters = "TETHER_E2E_CLUSTERS"

// Env is the clusters of a test run.
type Env struct {
	State   *sandbox.State
	Host    *Cluster
	Members []*Cluster
	// Echo is where kwok sends the member pods' forwarded ports, when this run started the clusters; nil when
	// it reuses running ones (kwok then echoes by itself).
	Echo *EchoServer
	// Chart is charts/tether rendered with ChartValues: Tether's processes run with its identities and
	// arguments (sandbox.State.ChartNodeArgs and the like).
	Chart *sandbox.Chart
	// Repo is the repository's root, Helm the helm binary built from its pin.
	Repo, Helm string
	owned      bool
}

// ChartValues are the chart values of the e2e runs, on top of sandbox.ChartValues: offloaded pods keep the default
// scheduler (the scheduler suite sends them to its tether-scheduler itself).
func ChartValues(extra ...string) []string {
	return append([]string{"scheduler.assignOffloadedPods=false"}, extra...)
}

// Cluster is one cluster as tests see it.
type Cluster struct {
	Name       string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	kubectl    string
}

// Run is the body of a suite's TestMain: it sets *env, runs the tests and tears down what it started.
//
//	var env *framework.Env
//	func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }
func Run(m *testing.M, env **Env) int { return RunWith(m, env, nil) }

// RunWith is Run with start called once the clusters are up (a suite's own processes beside them, in place of a
// sandbox's); the tests run only if it succeeds, and its restore runs before the teardown in any case.
func RunWith(m *testing.M, env **Env, start func(ctx context.Context, e *Env) (restore func() error, err error)) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := Setup(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	*env = e
	restore := func() error { return nil }
	if start != nil {
		restore, err = start(ctx, e)
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
	} else {
		code = m.Run()
	}
	if err := errors.Join(restore(), e.Teardown(context.WithoutCancel(ctx))); err != nil {
		fmt.Fprintln(os.Stderr, "e2e teardown:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Setup reuses the clusters named by TETHER_E2E_CLUSTERS (a sandbox, with its tether-node), or starts the default
// harness in a temporary folder with a tether-node built from this checkout.
func Setup(ctx context.Context, log io.Writer) (*Env, error) {
	if dir := os.Getenv(EnvClusters); dir != "" {
		st, err := sandbox.Load(dir)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvClusters, dir, err)
		}
		if err := sandbox.Healthy(ctx, st); err != nil {
			return nil, fmt.Errorf("%s=%s: clusters not healthy: %w", EnvClusters, dir, err)
		}
		fmt.Fprintf(log, "e2e: reusing the clusters in %s\n", st.Dir)
		if err := ensureHostObjects(ctx, st); err != nil {
			return nil, err
		}
		e, err := newEnv(st, false)
		if err != nil {
			return nil, err
		}
		if e.Repo, err = sandbox.FindRepoRoot("."); err != nil {
			return nil, err
		}
		if e.Helm, err = sandbox.EnsureHelm(ctx, e.Repo, log); err != nil {
			return nil, err
		}
		e.Chart, err = sandbox.RenderChart(ctx, e.Helm, filepath.Join(e.Repo, sandbox.ChartDir), sandbox.ChartValues(ChartValues()...)...)
		return e, err
	}
	repo, err := sandbox.FindRepoRoot(".")
	if err != nil {
		return nil, err
	}
	cache, err := sandbox.DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	tools, err := sandbox.EnsureTools(ctx, repo, cache, log)
	if err != nil {
		return nil, err
	}
	helm, err := sandbox.EnsureHelm(ctx, repo, log)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		return nil, err
	}
	bins := map[string]string{}
	for _, name := range []string{sandbox.TetherNode, sandbox.TetherWebhook, Tetherctl} {
		bins[name] = filepath.Join(dir, name)
		build := exec.CommandContext(ctx, "go", "build", "-o", bins[name], "./cmd/"+name)
		build.Dir = repo
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", name, err, out)
		}
	}
	echo, err := StartEchoServer()
	if err != nil {
		return nil, err
	}
	cfg := sandbox.DefaultConfig(dir)
	cfg.Tools = tools
	cfg.Log = log
	cfg.PortForwardTarget = echo.Addr()
	start := time.Now()
	st, err := sandbox.Up(ctx, cfg)
	if err != nil {
		echo.Close()
		return nil, err
	}
	fmt.Fprintf(log, "e2e: clusters up in %s (state in %s)\n", time.Since(start).Round(100*time.Millisecond), dir)
	e, err := newEnv(st, true)
	if err != nil {
		echo.Close()
		return nil, errors.Join(err, sandbox.Down(context.WithoutCancel(ctx), dir))
	}
	e.Echo, e.Repo, e.Helm = echo, repo, helm
	if err := e.startTether(ctx, bins); err != nil {
		return nil, errors.Join(err, e.Teardown(context.WithoutCancel(ctx)))
	}
	return e, nil
}

// WebhookNamespace is a host namespace the webhook selects, made by Setup for tests that need one fixed.
const WebhookNamespace = "e2e-offload"

// Tetherctl names tetherctl among the binaries Setup builds.
const Tetherctl = "tetherctl"

// startTether installs the chart's identities, joins the members with tetherctl, starts tether-node and
// tether-webhook beside fresh clusters as the chart runs them, and waits until both work.
func (e *Env) startTether(ctx context.Context, bins map[string]string) error {
	st := e.State
	var err error
	if e.Chart, err = st.InstallChart(ctx, e.Helm, e.Repo, ChartValues()...); err != nil {
		return err
	}
	// The kubelet API takes one port per member from ports[0] on (see ChartNodeArgs).
	kubelet, err := sandbox.FreePorts(len(st.Members()))
	if err != nil {
		return err
	}
	if err := st.JoinMembers(ctx, bins[Tetherctl], kubelet); err != nil {
		return err
	}
	ports := []int{kubelet, 0, 0}
	for i := 1; i < len(ports); i++ {
		if ports[i], err = sandbox.FreePort(); err != nil {
			return err
		}
	}
	// Short status and health intervals so that tests see changes quickly.
	node, err := st.ChartNodeArgs(ctx, e.Chart, bins[sandbox.TetherNode], ports[0],
		"--node-status-interval", "2s", "--health-interval", "1s", "--health-timeout", "1s", "--log-level", "debug")
	if err != nil {
		return err
	}
	if _, err := st.StartProcess(sandbox.TetherNode, node...); err != nil {
		return err
	}
	webhook, err := st.ChartWebhookArgs(ctx, e.Chart, bins[sandbox.TetherWebhook], ports[1], ports[2])
	if err != nil {
		return err
	}
	if _, err := st.StartProcess(sandbox.TetherWebhook, webhook...); err != nil {
		return err
	}
	if err := st.WaitVirtualNodes(ctx, time.Minute); err != nil {
		return err
	}
	if err := ensureHostObjects(ctx, st); err != nil {
		return err
	}
	return st.WaitWebhook(ctx, WebhookNamespace, time.Minute)
}

// ensureHostObjects makes what tests expect in the host: Tether's StorageClass and the webhook's namespace.
func ensureHostObjects(ctx context.Context, st *sandbox.State) error {
	if err := st.EnsureStorageClass(ctx); err != nil {
		return err
	}
	return st.EnsureNamespace(ctx, WebhookNamespace, map[string]string{api.LabelOffload: api.OffloadEnabled})
}

// StopProcess stops one of Tether's processes (sandbox.TetherNode, sandbox.TetherWebhook) with sig; SIGKILL
// simulates a crash.
func (e *Env) StopProcess(t testing.TB, name string, sig syscall.Signal) {
	t.Helper()
	if err := e.State.StopProcess(name, sig); err != nil {
		t.Fatal(err)
	}
}

// StartProcess starts a stopped process again with its arguments and waits until it works.
func (e *Env) StartProcess(t testing.TB, name string) {
	t.Helper()
	if err := e.State.RestartProcess(name); err != nil {
		t.Fatal(err)
	}
	if err := e.waitProcess(t.Context(), name); err != nil {
		t.Fatal(err)
	}
}

// RestartProcessWith restarts one of Tether's processes with extra arguments (later flags win) until the test
// ends, then with its own arguments again.
func (e *Env) RestartProcessWith(t testing.TB, name string, extra ...string) {
	t.Helper()
	p := e.State.Process(name)
	if p == nil {
		t.Fatalf("no process %s", name)
	}
	args := slices.Clone(p.Args)
	e.StopProcess(t, name, syscall.SIGTERM)
	if _, err := e.State.StartProcess(name, append(slices.Clone(args), extra...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.State.StopProcess(name, syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		if _, err := e.State.StartProcess(name, args...); err != nil {
			t.Error(err)
		}
		if err := e.waitProcess(context.WithoutCancel(t.Context()), name); err != nil {
			t.Error(err)
		}
	})
	if err := e.waitProcess(t.Context(), name); err != nil {
		t.Fatal(err)
	}
}

// ProcessLogHas reports whether the log of one of Tether's processes has a line holding every part.
func (e *Env) ProcessLogHas(name string, parts ...string) (bool, error) {
	p := e.State.Process(name)
	if p == nil {
		return false, fmt.Errorf("no process %s", name)
	}
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(string(b)) {
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(line, s) }) {
			return true, nil
		}
	}
	return false, nil
}

func (e *Env) waitProcess(ctx context.Context, name string) error {
	switch name {
	case sandbox.TetherNode:
		return e.State.WaitVirtualNodes(ctx, time.Minute)
	case sandbox.TetherWebhook:
		return e.State.WaitWebhook(ctx, WebhookNamespace, time.Minute)
	}
	return nil
}

// Member returns the member cluster of that name.
func (e *Env) Member(t testing.TB, name string) *Cluster {
	t.Helper()
	for _, m := range e.Members {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no member %s", name)
	return nil
}

func newEnv(st *sandbox.State, owned bool) (*Env, error) {
	e := &Env{State: st, owned: owned}
	for i, c := range st.Clusters {
		cl, err := newCluster(c, st.Kubectl)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			e.Host = cl
		} else {
			e.Members = append(e.Members, cl)
		}
	}
	return e, nil
}

func newCluster(c sandbox.Cluster, kubectl string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	cfg.UserAgent = "tether-e2e"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	return &Cluster{Name: c.Name, Kubeconfig: c.Kubeconfig, Config: cfg, Client: cs, kubectl: kubectl}, nil
}

// Teardown stops the clusters when Setup started them; reused ones are left running.
func (e *Env) Teardown(ctx context.Context) error {
	if !e.owned {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if e.Echo != nil {
		e.Echo.Close()
	}
	if err := sandbox.Down(ctx, e.State.Dir); err != nil {
		return err
	}
	// The folder is Setup's own: it also holds the binaries built for the run.
	return os.RemoveAll(e.State.Dir)
}

// KubectlResult is what one kubectl run printed and how it ended.
type KubectlResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// Kubectl runs the real kubectl against the cluster with args; stdin may be nil. A non-zero exit is not an error:
// callers look at ExitCode. err reports only a kubectl that could not run or was stopped by ctx.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (KubectlResult, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	res := KubectlResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), ctx.Err())
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	case err != nil:
		return res, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return res, nil
}

// KubectlTimeout bounds one MustKubectl run, so that a stream that never ends fails the test instead of hanging it.
const KubectlTimeout = 2 * time.Minute

// MustKubectl runs kubectl and fails the test unless it exits 0 within KubectlTimeout; it returns stdout.
func (c *Cluster) MustKubectl(t testing.TB, stdin io.Reader, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), KubectlTimeout)
	defer cancel()
	res, err := c.Kubectl(ctx, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("kubectl %s: exit %d: %s", strings.Join(args, " "), res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// StartKubectl starts the real kubectl against the cluster in the background (logs -f, attach, port-forward) and
// returns its standard output; it is stopped when the test ends.
func (c *Cluster) StartKubectl(t testing.TB, args ...string) *bufio.Reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background()) // ended by the cleanup below
	cmd := exec.CommandContext(ctx, c.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	return bufio.NewReader(out)
}

// Namespace creates a namespace with a generated name in the cluster and deletes it when the test ends.
func (c *Cluster) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("%s: create namespace: %v", c.Name, err)
	}
	t.Cleanup(func() {
		// t.Context() is over by now: the cleanup gets a short lifetime of its own.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if t.Failed() {
			// What happened in the namespace, for the failure's reader.
			if evs, err := c.Client.CoreV1().Events(ns.Name).List(ctx, metav1.ListOptions{}); err == nil {
				for _, e := range evs.Items {
					t.Logf("%s event: %s %s/%s %s %s: %s (×%d, from %s)", c.Name, e.LastTimestamp.Format(time.RFC3339), e.InvolvedObject.Kind,
						e.InvolvedObject.Name, e.Type, e.Reason, e.Message, e.Count, e.Source.Component)
				}
			}
		}
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Logf("%s: delete namespace %s: %v", c.Name, ns.Name, err)
		}
	})
	return ns.Name
}

// RunningIn waits (two minutes at most) until the host pod ns/name runs on tether-<member> and its member pod runs;
// it returns both.
func (e *Env) RunningIn(t testing.TB, ns, name, member string) (host, mp *corev1.Pod) {
	t.Helper()
	m := e.Member(t, member)
	Eventually(t, 2*time.Minute, fmt.Sprintf("pod %s Running in %s", name, member), func(ctx context.Context) error {
		var err error
		if host, err = e.Host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if host.Spec.NodeName != api.NodeName(api.DefaultNodePrefix, member) || host.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("host pod on %q, %s", host.Spec.NodeName, host.Status.Phase)
		}
		if mp, err = m.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if mp.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("member pod %s", mp.Status.Phase)
		}
		return nil
	})
	return host, mp
}

// Eventually polls cond every 200 ms until it returns nil, and fails the test with cond's last error after
// timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		// Each attempt gets the test's lifetime, not the poll's deadline, so the last error is a real reason
		// rather than a call cut off by the deadline.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		last = cond(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, errors.Join(last, err))
	}
}

// LeaveFree leaves, on each member node named (member → node → CPU), that much of its DefaultNodeCPU free: a pod of
// the member's own (not Tether's) on that node takes the rest, until the test ends.
func (e *Env) LeaveFree(t testing.TB, cpu map[string]map[string]string) {
	t.Helper()
	total := resource.MustParse(sandbox.DefaultNodeCPU)
	for member, nodes := range cpu {
		m := e.Member(t, member)
		ns := m.Namespace(t, nil)
		for n, left := range nodes {
			take := total.DeepCopy()
			take.Sub(resource.MustParse(left))
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "fill-" + n},
				Spec: corev1.PodSpec{NodeName: n, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{Name: "fill", Image: "registry.example/fill:1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: take}}}}},
			}
			if _, err := m.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: filler on %s: %v", member, n, err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				zero := int64(0)
				_ = m.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			})
		}
	}
}

// RunInstead builds the binary cmd/name of module (a folder of the repository: "." or "scheduler") and runs it
// with args(binary) in place of a running process of that name (a sandbox's own), then waits for ready. restore
// stops it and starts again what ran before, if anything; it is never nil.
func (e *Env) RunInstead(ctx context.Context, name, module string, args func(bin string) ([]string, error), ready func(ctx context.Context) error) (restore func() error, err error) {
	restore = func() error { return nil }
	dir, err := os.MkdirTemp("", "tether-e2e-"+name+"-")
	if err != nil {
		return restore, err
	}
	restore = func() error { return os.RemoveAll(dir) }
	bin := filepath.Join(dir, name)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	build.Dir = filepath.Join(e.Repo, module)
	if out, err := build.CombinedOutput(); err != nil {
		return restore, fmt.Errorf("build %s: %w\n%s", name, err, out)
	}
	argv, err := args(bin)
	if err != nil {
		return restore, err
	}
	var previous []string
	if p := e.State.Process(name); p != nil && sandbox.ProcessRunning(p) {
		previous = slices.Clone(p.Args)
		if err := e.State.StopProcess(name, syscall.SIGTERM); err != nil {
			return restore, err
		}
	}
	restore = func() error {
		err := e.State.StopProcess(name, syscall.SIGTERM)
		if previous != nil {
			_, serr := e.State.StartProcess(name, previous...)
			err = errors.Join(err, serr)
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	if _, err := e.State.StartProcess(name, argv...); err != nil {
		return restore, err
	}
	return restore, ready(ctx)
}

// KubeletPort is the --kubelet-port of the running tether-node (its first member's kubelet API port).
func (e *Env) KubeletPort() (int, error) {
	p := e.State.Process(sandbox.TetherNode)
	if p == nil {
		return 0, errors.New("no tether-node in the harness")
	}
	port := 0
	for i, a := range p.Args {
		v, ok := strings.CutPrefix(a, "--kubelet-port=")
		if !ok && a == "--kubelet-port" && i+1 < len(p.Args) {
			v, ok = p.Args[i+1], true
		}
		if ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("tether-node --kubelet-port %q: %w", v, err)
			}
			port = n
		}
	}
	if port == 0 {
		return 0, errors.New("tether-node runs without --kubelet-port")
	}
	return port, nil
}
