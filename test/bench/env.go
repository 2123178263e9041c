package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tetherkube/tether/internal/sandbox"
)

// cluster is one cluster as the bench uses it.
type cluster struct {
	name     string
	client   kubernetes.Interface
	hostport string // of its apiserver
	auditLog string
}

// env is a running host + members with tether-node.
type env struct {
	st        *sandbox.State
	host      *cluster
	members   []*cluster
	debug     *debugClient
	tetherBin string
	log       io.Writer
	// W6: bursts are not spread over the members by a nodeSelector, and name this scheduler ("": the default).
	unpinned      bool
	schedulerName string
}

// benchUserAgent names the load generator in audit logs.
const benchUserAgent = benchComponent

// members of every environment: two, each with nodes kwok runs pods on.
func memberConfigs(o *options) []sandbox.MemberConfig {
	tmpl := sandbox.NodeConfig{CPU: "1000", Memory: "4Ti", Pods: o.NodePods}
	return []sandbox.MemberConfig{sandbox.UniformMember("m1", o.MemberNodes, tmpl), sandbox.UniformMember("m2", o.MemberNodes, tmpl)}
}

// buildTetherNode builds tether-node from the checkout into dir.
func buildTetherNode(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "tether-node")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tether-node")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tether-node: %w\n%s", err, out)
	}
	return bin, nil
}

// buildScheduler builds tether-scheduler from its module (scheduler/) into dir.
func buildScheduler(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, sandbox.TetherScheduler)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+sandbox.TetherScheduler)
	cmd.Dir = filepath.Join(repo, "scheduler")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", sandbox.TetherScheduler, err, out)
	}
	return bin, nil
}

// upEnv starts clusters in dir (audited when auditPolicy is a file) and tether-node beside them.
func upEnv(ctx context.Context, o *options, tools *sandbox.Tools, tetherBin, dir, prefix, auditPolicy string, log io.Writer) (*env, error) {
	return upClusters(ctx, o, sandbox.Config{Dir: dir, Prefix: prefix, Members: memberConfigs(o), DisableQPSLimits: true, NoMetricsServer: true,
		AuditPolicy: auditPolicy, Tools: tools, Log: log}, tetherBin, log)
}

// upEnvWith starts clusters with the given members in dir, and tether-node beside them.
func upEnvWith(ctx context.Context, o *options, tools *sandbox.Tools, tetherBin, dir, prefix string, members []sandbox.MemberConfig, log io.Writer) (*env, error) {
	return upClusters(ctx, o, sandbox.Config{Dir: dir, Prefix: prefix, Members: members, DisableQPSLimits: true, NoMetricsServer: true,
		Tools: tools, Log: log}, tetherBin, log)
}

func upClusters(ctx context.Context, o *options, cfg sandbox.Config, tetherBin string, log io.Writer) (*env, error) {
	dir := cfg.Dir
	start := time.Now()
	st, err := sandbox.Up(ctx, cfg)
	if errors.Is(err, sandbox.ErrAlreadyUp) {
		return nil, fmt.Errorf("%s already holds running clusters: use another -workdir", dir)
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "clusters up in %s\n", time.Since(start).Round(100*time.Millisecond))
	e := &env{st: st, tetherBin: tetherBin, log: log}
	if err := e.init(ctx, o); err != nil {
		return nil, errors.Join(err, e.down(context.WithoutCancel(ctx)))
	}
	return e, nil
}

func (e *env) init(ctx context.Context, o *options) error {
	for i, c := range e.st.Clusters {
		cl, err := newCluster(c)
		if err != nil {
			return err
		}
		if i == 0 {
			e.host = cl
		} else {
			e.members = append(e.members, cl)
		}
	}
	// The kubelet API takes one port per member from ports[0] on (see TetherNodeArgs).
	kubeletPort, err := sandbox.FreePorts(len(e.members))
	if err != nil {
		return err
	}
	debugPort, err := sandbox.FreePort()
	if err != nil {
		return err
	}
	ports := []int{kubeletPort, debugPort}
	debugAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	e.debug = newDebugClient(debugAddr)
	args := e.st.TetherNodeArgs(e.tetherBin, ports[0], append(o.Tether.args(), "--debug-address", debugAddr)...)
	if _, err := e.st.StartProcess(sandbox.TetherNode, args...); err != nil {
		return err
	}
	return e.waitTether(ctx)
}

// waitTether waits until the virtual nodes are Ready and the debug endpoint answers.
func (e *env) waitTether(ctx context.Context) error {
	if err := e.st.WaitVirtualNodes(ctx, 2*time.Minute); err != nil {
		return fmt.Errorf("virtual nodes: %w (tether-node log: %s)", err, e.tetherLog())
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.debug.metrics(ctx)
		return err == nil, nil
	})
}

func (e *env) tetherLog() string {
	if p := e.st.Process(sandbox.TetherNode); p != nil {
		return p.Log
	}
	return ""
}

// tetherPid is tether-node's pid, 0 when it does not run.
func (e *env) tetherPid() int {
	p := e.st.Process(sandbox.TetherNode)
	if p == nil || !sandbox.ProcessRunning(p) {
		return 0
	}
	return p.Pid
}

// restartTether stops tether-node with sig and starts it again (not waiting).
func (e *env) stopTether(sig syscall.Signal) error { return e.st.StopProcess(sandbox.TetherNode, sig) }
func (e *env) startTether() error                  { return e.st.RestartProcess(sandbox.TetherNode) }

// clusterOf names the cluster whose apiserver is hostport.
func (e *env) clusterOf(hostport string) string {
	for _, c := range append([]*cluster{e.host}, e.members...) {
		if c.hostport == hostport {
			return c.name
		}
	}
	return hostport
}

func (e *env) member(name string) *cluster {
	for _, m := range e.members {
		if m.name == name {
			return m
		}
	}
	return nil
}

func (e *env) down(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return sandbox.Down(ctx, e.st.Dir)
}

func newCluster(c sandbox.Cluster) (*cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	cfg.QPS = -1 // no client-side limit: the load generator must not be the bottleneck
	cfg.UserAgent = benchUserAgent
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("%s: server %q: %w", c.Name, cfg.Host, err)
	}
	return &cluster{name: c.Name, client: cs, hostport: u.Host, auditLog: c.AuditLog()}, nil
}

// ensureNamespace creates a namespace unless it exists and waits for its default ServiceAccount, without which
// pods are refused.
func ensureNamespace(ctx context.Context, c *cluster, name string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%s: namespace %s: %w", c.name, name, err)
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// writeFile writes content to path, creating its folder.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
