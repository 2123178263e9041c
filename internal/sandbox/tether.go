package sandbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/api"
)

// TetherNode is the name of tether-node's process in the state.
const TetherNode = "tether-node"

// TetherNodeArgs are the arguments the sandbox and the e2e suites give tether-node: the host, every member by flag,
// the kubelet API on 127.0.0.1:kubeletPort, no metrics listener, and extra. The first member's node is published on kubeletPort, member
// i (from 0) on kubeletPort+i, so that each node's /stats/summary and /metrics/resource are its own.
func (s *State) TetherNodeArgs(bin string, kubeletPort int, extra ...string) []string {
	// No metrics listener on the default :10256: two tether-nodes on one machine (a sandbox and an e2e run) would
	// collide; who reads metrics passes an address of its own (later flags win).
	args := []string{bin, "--kubeconfig", s.Host().Kubeconfig, "--kubelet-address", "127.0.0.1",
		"--kubelet-bind-address", "127.0.0.1", "--kubelet-port", strconv.Itoa(kubeletPort), "--client-ca-file", s.KubeletClientCA,
		"--metrics-address", ""}
	for i, m := range s.Members() {
		args = append(args, "--member", m.Name+"="+m.Kubeconfig)
		if i > 0 {
			args = append(args, "--member-kubelet-port", m.Name+"="+strconv.Itoa(kubeletPort+i))
		}
	}
	return append(args, extra...)
}

// WaitVirtualNodes waits until every member's virtual node (tether-<member>) is Ready in the host.
func (s *State) WaitVirtualNodes(ctx context.Context, timeout time.Duration) error {
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = nil
		for _, m := range s.Members() {
			n, err := cs.CoreV1().Nodes().Get(ctx, api.NodeName(api.DefaultNodePrefix, m.Name), metav1.GetOptions{})
			if err != nil {
				last = err
				return false, nil
			}
			if !nodeReady(n) {
				last = fmt.Errorf("node %s: %s", n.Name, readyMessage(n))
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return "no Ready condition"
}

// TetherWebhook is the name of tether-webhook's process in the state.
const TetherWebhook = "tether-webhook"

// WebhookArgs are the arguments the sandbox and the e2e suites give tether-webhook: serving on 127.0.0.1:port with a
// certificate it makes itself, and keeping the host's MutatingWebhookConfiguration pointed at that address.
func (s *State) WebhookArgs(bin string, port, healthPort int, extra ...string) []string {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return append([]string{bin, "--kubeconfig", s.Host().Kubeconfig, "--namespace", TetherNamespace,
		"--listen-address", addr, "--health-address", "127.0.0.1:" + strconv.Itoa(healthPort),
		"--ip-addresses", "127.0.0.1", "--manage-webhook-configuration", "--url", "https://" + addr + "/mutate"}, extra...)
}

// WaitWebhook waits until the host apiserver calls tether-webhook: a server-side dry-run of a pod in a namespace
// the webhook selects comes back mutated.
func (s *State) WaitWebhook(ctx context.Context, namespace string, timeout time.Duration) error {
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-probe-"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "probe"}}},
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err
			return false, nil
		}
		if _, ok := p.Annotations[api.AnnotationScheduling]; !ok {
			last = errors.New("the probe pod came back unchanged: the webhook is not called yet")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}

// EnsureNamespace creates a host namespace with labels unless it exists.
func (s *State) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}

// StorageClass is the host StorageClass api.DefaultStorageClass: its claims live in the member that runs their
// first pod (controllers/volumes), bound to the member's default class.
func StorageClass() *storagev1.StorageClass {
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	reclaim := corev1.PersistentVolumeReclaimDelete
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: api.DefaultStorageClass, Labels: api.ManagedLabels()},
		Provisioner: api.Provisioner, VolumeBindingMode: &wait, ReclaimPolicy: &reclaim}
}

// EnsureStorageClass creates StorageClass() in the host unless it exists.
func (s *State) EnsureStorageClass(ctx context.Context) error {
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	_, err = cs.StorageV1().StorageClasses().Create(ctx, StorageClass(), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("storage class %s: %w", api.DefaultStorageClass, err)
	}
	return nil
}

// TetherDescheduler is the name of tether-descheduler's process in the state.
const TetherDescheduler = "tether-descheduler"

// DeschedulerPolicyFile is the file in the state folder with the policy tether-descheduler runs.
const DeschedulerPolicyFile = "descheduler-policy.yaml"

// DeschedulerPolicy is the policy the sandbox and the e2e suites give tether-descheduler: the MemberUnschedulable
// plugin with the DefaultEvictor, with its defaults (unschedulableFor 30s, avoidFor 5m) unless args say otherwise
// (YAML lines of the plugin's args, indented by the caller's need: "unschedulableFor: 10s").
func DeschedulerPolicy(args ...string) string {
	pluginArgs := "{}"
	if len(args) > 0 {
		pluginArgs = "\n"
		for _, a := range args {
			pluginArgs += "      " + a + "\n"
		}
	}
	return `apiVersion: descheduler/v1alpha2
kind: DeschedulerPolicy
profiles:
- name: tether
  pluginConfig:
  - name: DefaultEvictor
    args: {}
  - name: MemberUnschedulable
    args: ` + pluginArgs + `
  plugins:
    deschedule:
      enabled: [MemberUnschedulable]
`
}

// DemoDeschedulerPolicy is the policy of `make sandbox` (and of the bench's W5): pods stuck in their member
// for 10 s move, so that a demo sees it happen within half a minute (the plugin's own default is 30 s).
func DemoDeschedulerPolicy() string { return DeschedulerPolicy("unschedulableFor: 10s") }

// DeschedulerArgs are the arguments the sandbox and the e2e suites give tether-descheduler: the host, the policy file
// policy, a descheduling interval of 5 s, and its metrics on 127.0.0.1:metricsPort (https), then extra.
func (s *State) DeschedulerArgs(bin, policy string, metricsPort int, extra ...string) []string {
	return append([]string{bin, "--kubeconfig", s.Host().Kubeconfig, "--policy-config-file", policy,
		"--descheduling-interval", "5s", "--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(metricsPort), "--v", "1"}, extra...)
}

// WriteDeschedulerPolicy writes policy into the state folder and returns its path.
func (s *State) WriteDeschedulerPolicy(name, policy string) (string, error) {
	return s.WriteFile(name, policy)
}

// TetherScheduler is the name of tether-scheduler's process in the state.
const TetherScheduler = "tether-scheduler"

// SchedulerConfigFile is the file in the state folder with the KubeSchedulerConfiguration tether-scheduler runs.
const SchedulerConfigFile = "scheduler-config.yaml"

// SchedulerConfig is tether-scheduler's KubeSchedulerConfiguration as a second profile beside the host's own
// scheduler: pods with schedulerName api.SchedulerName (tether-webhook --scheduler-name sets it) get MemberFit on
// top of the default plugins, its score weighted 5. No leader election (one copy); qps and burst are the client's
// limits (kube-scheduler's defaults are 50 and 100).
func SchedulerConfig(kubeconfig string, qps float64, burst int) string {
	return fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: %g
  burst: %d
leaderElection:
  leaderElect: false
profiles:
- schedulerName: %s
  plugins:
    preFilter:
      enabled: [{name: %[5]s}]
    filter:
      enabled: [{name: %[5]s}]
    score:
      enabled: [{name: %[5]s, weight: 5}]
  pluginConfig:
  - name: %[5]s
    args:
      nodePrefix: %[6]s
      keepLabelKeys: []
`, kubeconfig, qps, burst, api.SchedulerName, api.SchedulerPlugin, api.DefaultNodePrefix)
}

// SchedulerArgs are the arguments the sandbox and the e2e suites give tether-scheduler: the configuration file
// config, and its health and metrics on https://127.0.0.1:port, then extra.
func (s *State) SchedulerArgs(bin, config string, port int, extra ...string) []string {
	return append([]string{bin, "--config", config, "--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port), "--v", "1"}, extra...)
}

// WaitScheduler waits until tether-scheduler on 127.0.0.1:port says it is healthy.
func WaitScheduler(ctx context.Context, port int, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// Its serving certificate is self-signed; only the answer matters.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // local health probe
	}}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("%s: %s", url, resp.Status)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}

// WriteFile writes content into the state folder and returns its path.
func (s *State) WriteFile(name, content string) (string, error) {
	p := filepath.Join(s.Dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}
