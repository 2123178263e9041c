package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tetherkube/tether/api"
)

// Files and folders under Config.Dir.
const (
	stateFile = "harness.json"
	kwokDir   = "kwok"
	pkiDir    = "pki"
	logsDir   = "logs"
	configDir = "config"
)

// Cluster is one running cluster.
type Cluster struct {
	// Name is "host" or the member's name.
	Name string `json:"name"`
	// KwokName is kwokctl's name for it (<prefix>-<name>).
	KwokName string `json:"kwokName"`
	// Kubeconfig is a self-contained admin kubeconfig (certificates embedded).
	Kubeconfig string `json:"kubeconfig"`
	// Logs is the folder of the cluster's component logs.
	Logs string `json:"logs"`
}

// AuditLog is the cluster's kube-apiserver audit log, written when Config.AuditPolicy is set.
func (c Cluster) AuditLog() string { return filepath.Join(c.Logs, "audit.log") }

// State is what a running harness leaves in <Dir>/harness.json: enough to reuse or stop it later.
type State struct {
	Dir      string    `json:"dir"`
	Prefix   string    `json:"prefix"`
	Kwokctl  string    `json:"kwokctl"`
	Kubectl  string    `json:"kubectl"`
	Clusters []Cluster `json:"clusters"`
	// KubeletClientCA is the CA of the host apiserver's kubelet client certificate.
	KubeletClientCA string    `json:"kubeletClientCA"`
	Started         time.Time `json:"started"`
	// QPSLimitsDisabled: the control planes run without client rate limits (Config.DisableQPSLimits).
	QPSLimitsDisabled bool `json:"qpsLimitsDisabled,omitempty"`
	// Processes were started beside the clusters with StartProcess.
	Processes []Process `json:"processes,omitempty"`
}

// Host returns the host cluster.
func (s *State) Host() Cluster { return s.Clusters[0] }

// Members returns the member clusters in order.
func (s *State) Members() []Cluster { return s.Clusters[1:] }

// ErrAlreadyUp is returned by Up when Dir already holds a running harness; the returned State describes it.
var ErrAlreadyUp = errors.New("already up")

// Up starts the host and the members and waits until they can run pods. When Dir already holds a healthy
// harness it returns that one with ErrAlreadyUp; a stale one (processes gone) is cleaned up first. On any failure,
// and when ctx ends, everything Up started is stopped again before it returns: the error names the step that
// failed and the log to read.
func Up(ctx context.Context, cfg Config) (*State, error) {
	cfg.complete()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("harness config: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if st, err := Load(dir); err == nil {
		if Healthy(ctx, st) == nil {
			return st, ErrAlreadyUp
		}
		fmt.Fprintf(cfg.Log, "found a stale harness in %s: cleaning it up\n", dir)
		if err := Down(ctx, dir); err != nil {
			return nil, fmt.Errorf("clean up stale harness: %w", err)
		}
	}
	for _, d := range []string{kwokDir, pkiDir, logsDir, configDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("step prepare: %w", err)
		}
	}
	st := &State{
		Dir:               dir,
		Prefix:            cfg.Prefix,
		Kwokctl:           cfg.Tools.Kwokctl,
		Kubectl:           cfg.Tools.Kubectl,
		KubeletClientCA:   filepath.Join(dir, pkiDir, KubeletClientCA),
		Started:           time.Now(),
		QPSLimitsDisabled: cfg.DisableQPSLimits,
	}
	// Written before the first cluster starts, so that Down finds whatever a failed or interrupted Up leaves.
	if err := st.save(); err != nil {
		return nil, fmt.Errorf("step prepare: %w", err)
	}
	if err := up(ctx, cfg, st); err != nil {
		// ctx may be over (Ctrl-C): cleaning up needs a lifetime of its own.
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		keepLogs := ctx.Err() == nil
		if keepLogs {
			// The component logs live in kwok's workdir, which stopping removes: keep a copy for the reader.
			for _, c := range st.Clusters {
				_ = os.CopyFS(filepath.Join(dir, logsDir, c.Name), os.DirFS(c.Logs))
			}
			err = fmt.Errorf("%w (logs kept in %s)", err, filepath.Join(dir, logsDir))
		}
		if derr := down(cleanupCtx, dir, keepLogs); derr != nil {
			err = errors.Join(err, fmt.Errorf("and cleaning up failed: %w", derr))
		}
		return nil, err
	}
	return st, nil
}

func up(ctx context.Context, cfg Config, st *State) error {
	dir := cfg.Dir
	if err := writeKubeletClientPKI(filepath.Join(dir, pkiDir)); err != nil {
		return fmt.Errorf("step pki: %w", err)
	}
	logFile := filepath.Join(dir, containerLog)
	if err := writeContainerLog(logFile, st.Started); err != nil {
		return fmt.Errorf("step container log: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, attachLog), nil, 0o644); err != nil {
		return fmt.Errorf("step attach log: %w", err)
	}
	names := []string{HostName}
	for _, m := range cfg.Members {
		names = append(names, m.Name)
	}
	for i, name := range names {
		c := Cluster{
			Name:       name,
			KwokName:   cfg.Prefix + "-" + name,
			Kubeconfig: filepath.Join(dir, name+".kubeconfig"),
		}
		c.Logs = filepath.Join(dir, kwokDir, "clusters", c.KwokName, "logs")
		st.Clusters = append(st.Clusters, c)
		if err := st.save(); err != nil {
			return fmt.Errorf("step prepare: %w", err)
		}
		start := time.Now()
		if err := createCluster(ctx, cfg, st, c, i == 0, logFile); err != nil {
			return err
		}
		if i > 0 {
			if err := restartDeadMetricsServer(st, c); err != nil {
				return fmt.Errorf("step metrics-server: %w", err)
			}
		}

		fmt.Fprintf(cfg.Log, "cluster %s up in %s\n", name, time.Since(start).Round(100*time.Millisecond))
	}
	// Members get their nodes after every control plane runs, so their kube-controller-managers have had
	// time to start the node lifecycle controller that lifts the not-ready taint.
	for i, m := range cfg.Members {
		c := st.Clusters[i+1]
		if err := createNodes(ctx, c, m); err != nil {
			return fmt.Errorf("step nodes of %s: %w", m.Name, err)
		}
	}
	for _, c := range st.Clusters {
		if err := waitUsable(ctx, c); err != nil {
			return fmt.Errorf("step wait for %s: %w", c.Name, err)
		}
	}
	if err := restartDeadMetricsServers(st); err != nil {
		return fmt.Errorf("step metrics-server: %w", err)
	}
	// Tether's own namespace in the host (member Secrets, the webhook's certificate).
	cs, err := clientFor(st.Host().Kubeconfig)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: TetherNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("step namespace %s: %w", TetherNamespace, err)
	}
	return nil
}

// TetherNamespace is Tether's namespace in the host.
const TetherNamespace = api.DefaultNamespace

// NodeOSImage and NodeRuntime are the OS image and container runtime member nodes report.
const (
	NodeOSImage = "kwok fake node"
	NodeRuntime = "kwok://fake"
)

func createCluster(ctx context.Context, cfg Config, st *State, c Cluster, host bool, logFile string) error {
	conf, err := renderKwokctlConfig(cfg.Tools, host, cfg.DisableQPSLimits, cfg.NoMetricsServer, filepath.Join(cfg.Dir, pkiDir),
		filepath.Join(cfg.Dir, kwokDir, "clusters", c.KwokName, "pki"), logFile, filepath.Join(cfg.Dir, attachLog), cfg.PortForwardTarget)
	if err != nil {
		return fmt.Errorf("step config of %s: %w", c.Name, err)
	}
	confPath := filepath.Join(cfg.Dir, configDir, c.Name+".yaml")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return fmt.Errorf("step config of %s: %w", c.Name, err)
	}
	logPath := filepath.Join(cfg.Dir, logsDir, "kwokctl-"+c.Name+".log")
	// kwokctl picks free ports when it plans a cluster and binds them only when the components start: two
	// harnesses creating clusters at once (a sandbox and a test run) would pick the same ports. One machine-wide
	// lock around each creation keeps them apart.
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "tether-harness-create.lock"))
	if err != nil {
		return fmt.Errorf("step create cluster %s: %w", c.Name, err)
	}
	args := []string{"create", "cluster", "--name", c.KwokName, "--config", confPath, "--kubeconfig", "", "--wait", "2m"}
	if cfg.AuditPolicy != "" {
		args = append(args, "--kube-audit-policy", cfg.AuditPolicy)
	}
	err = st.kwokctl(ctx, logPath, args...)
	unlock()
	if err != nil {
		return fmt.Errorf("step create cluster %s failed, see %s: %w", c.Name, logPath, err)
	}
	src := filepath.Join(cfg.Dir, kwokDir, "clusters", c.KwokName, "kubeconfig.yaml")
	if err := writeKubeconfig(src, c.Kubeconfig, "tether-"+c.Name); err != nil { // the kubeconfig context name
		return fmt.Errorf("step kubeconfig of %s: %w", c.Name, err)
	}
	return nil
}

// kwokctl runs kwokctl with the harness's own workdir, so it sees only this harness's clusters.
func (s *State) kwokctl(ctx context.Context, logPath string, args ...string) error {
	if _, err := os.Stat(s.Kwokctl); err != nil {
		return fmt.Errorf("kwokctl missing (was the tools cache removed?): %w", err)
	}
	cmd := exec.CommandContext(ctx, s.Kwokctl, args...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+filepath.Join(s.Dir, kwokDir))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ kwokctl %s\n", strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a Ctrl-C in the terminal reaches only the harness, which then stops kwokctl and
	// cleans up in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return errors.Join(ctx.Err(), err)
	}
	return nil
}

func writeKubeconfig(src, dst, name string) error {
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		return err
	}
	// Embed the certificate files so that the kubeconfig stands alone.
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return err
	}
	kctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return fmt.Errorf("%s: no current context", src)
	}
	cluster, user := cfg.Clusters[kctx.Cluster], cfg.AuthInfos[kctx.AuthInfo]
	if cluster == nil || user == nil {
		return fmt.Errorf("%s: context %s is incomplete", src, cfg.CurrentContext)
	}
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = cluster
	out.AuthInfos[name] = user
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	out.CurrentContext = name
	return clientcmd.WriteToFile(*out, dst)
}

// restConfig loads a kubeconfig with client limits that do not slow tests down.
func restConfig(kubeconfig string) (*rest.Config, error) {
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	c.QPS, c.Burst = 200, 400
	c.UserAgent = "tether-harness"
	return c, nil
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	c, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(c)
}

func createNodes(ctx context.Context, c Cluster, m MemberConfig) error {
	cs, err := clientFor(c.Kubeconfig)
	if err != nil {
		return err
	}
	for _, n := range m.Nodes {
		if _, err := cs.CoreV1().Nodes().Create(ctx, kwokNode(n), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
	}
	return nil
}

// kwokNode is a fake node that kwok-controller manages (annotation kwok.x-k8s.io/node=fake).
func kwokNode(n NodeConfig) *corev1.Node {
	labels := map[string]string{
		"type":                   "kwok",
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(n.CPU), // validated before
		corev1.ResourceMemory: resource.MustParse(n.Memory),
		corev1.ResourcePods:   *resource.NewQuantity(int64(n.Pods), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   n.Name,
			Labels: labels,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0",
				// where kwok serves this node's /metrics/resource; metrics-server reads the annotation
				"metrics.k8s.io/resource-metrics-path": "/metrics/nodes/" + n.Name + "/metrics/resource"},
		},
		Spec: corev1.NodeSpec{Taints: n.Taints},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res,
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    "amd64",
				OperatingSystem: "linux",
				KubeletVersion:  "fake",
				// What a virtual node shows of its member in `kubectl get nodes -o wide`.
				OSImage:                 NodeOSImage,
				ContainerRuntimeVersion: NodeRuntime,
			},
			Phase: corev1.NodeRunning,
		},
	}
}

// waitUsable waits until pods can run: the apiserver is ready, the default ServiceAccount exists (pods are
// refused without it) and every node is Ready without the not-ready taint.
func waitUsable(ctx context.Context, c Cluster) error {
	cs, err := clientFor(c.Kubeconfig)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		last = usable(ctx, cs)
		return last == nil, nil
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}

func usable(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("default service account: %w", err)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			return fmt.Errorf("node %s is not ready", n.Name)
		}
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				return fmt.Errorf("node %s still has taint %s", n.Name, t.Key)
			}
		}
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Healthy reports whether every cluster of st answers /readyz.
func Healthy(ctx context.Context, st *State) error {
	if len(st.Clusters) == 0 {
		return errors.New("no clusters")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, c := range st.Clusters {
		cs, err := clientFor(c.Kubeconfig)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}

// Load reads the state of a harness from dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, stateFile))
}

// Down stops every process the harness in dir started and removes what it wrote there. A dir without a harness
// is not an error. Processes are found through kwokctl and, should kwokctl fail, through the pid files it keeps;
// nothing else is touched.
func Down(ctx context.Context, dir string) error { return down(ctx, dir, false) }

func down(ctx context.Context, dir string, keepLogs bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	st, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	if err == nil {
		if err := st.stopProcesses(); err != nil {
			errs = append(errs, err)
		}
		logPath := filepath.Join(dir, logsDir, "kwokctl-delete.log")
		for _, c := range st.Clusters {
			if _, err := os.Stat(filepath.Join(dir, kwokDir, "clusters", c.KwokName)); err != nil {
				continue // never created
			}
			if err := st.kwokctl(ctx, logPath, "delete", "cluster", "--name", c.KwokName); err != nil {
				errs = append(errs, fmt.Errorf("kwokctl delete cluster %s (log: %s): %w", c.KwokName, logPath, err))
			}
		}
	}
	if err := killLeftovers(filepath.Join(dir, kwokDir)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	remove := []string{kwokDir, pkiDir, configDir, containerLog, attachLog}
	if !keepLogs {
		remove = append(remove, logsDir)
	}
	for _, name := range remove {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".kubeconfig") {
			errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	errs = append(errs, os.Remove(filepath.Join(dir, stateFile)))
	_ = os.Remove(dir) // only if empty: the folder may hold things that are not ours
	return errors.Join(errs...)
}

// killLeftovers stops processes named by kwokctl's pid files under kwokWorkdir (clusters/*/pids/*.pid) that
// still run. kwokctl removes a cluster's folder when it deletes it, so this finds only what it missed.
func killLeftovers(kwokWorkdir string) error {
	files, _ := filepath.Glob(filepath.Join(kwokWorkdir, "clusters", "*", "pids", "*.pid"))
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		// The pid may have been reused since: only stop a process whose command line lies in the workdir's
		// cluster or names a binary kwokctl started from there.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), kwokWorkdir) {
			continue
		}
		if err := stopPid(pid); err != nil {
			errs = append(errs, fmt.Errorf("stop pid %d (%s): %w", pid, f, err))
		}
	}
	return errors.Join(errs...)
}

// stopPid sends SIGTERM, waits up to 10 s, then SIGKILL.
func stopPid(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
