package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/tetherkube/tether/api"
)

// ChartRelease is the release name the sandbox and the e2e suites render charts/tether with.
const ChartRelease = "tether"

// ChartDir is the chart's folder in the repository.
const ChartDir = "charts/tether"

// ChartIdentityTTL is the lifetime of the tokens minted for the chart's ServiceAccounts: longer than any sandbox
// is expected to stay up (a pod's projected token rotates; these are written once).
const ChartIdentityTTL = 365 * 24 * time.Hour

// Chart is charts/tether rendered by `helm template` for the host of a harness, so that Tether's processes run
// there as the chart runs them in a cluster: with the chart's ServiceAccounts and roles, and its arguments.
type Chart struct {
	// Objects are the rendered objects, in helm's order.
	Objects []*unstructured.Unstructured
}

// RenderChart runs `helm template` on the chart in chartDir into namespace TetherNamespace, with --set values
// (key=value each).
func RenderChart(ctx context.Context, helm, chartDir string, set ...string) (*Chart, error) {
	args := []string{"template", ChartRelease, chartDir, "--namespace", TetherNamespace}
	for _, v := range set {
		args = append(args, "--set", v)
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w: %s", chartDir, err, strings.TrimSpace(stderr.String()))
	}
	return ParseChart(out)
}

// ParseChart decodes the YAML stream of `helm template`.
func ParseChart(manifest []byte) (*Chart, error) {
	c := &Chart{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return c, nil
		} else if err != nil {
			return nil, fmt.Errorf("rendered chart: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		c.Objects = append(c.Objects, &unstructured.Unstructured{Object: m})
	}
}

// Find returns the rendered object of kind and name (any namespace), or nil.
func (c *Chart) Find(kind, name string) *unstructured.Unstructured {
	for _, o := range c.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// identityKinds are what InstallIdentities applies: who the processes are and what they may do. Deployments,
// Services, PodDisruptionBudgets and ServiceMonitors need a kubelet; the processes run beside the clusters instead.
var identityKinds = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ConfigMap":          {Version: "v1", Resource: "configmaps"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// InstallIdentities applies the chart's ServiceAccounts, roles, bindings and ConfigMaps to the host by server-side
// apply (field manager helm), creating Tether's namespace first.
func (s *State) InstallIdentities(ctx context.Context, c *Chart) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := s.EnsureNamespace(ctx, TetherNamespace, nil); err != nil {
		return err
	}
	for _, o := range c.Objects {
		gvr, ok := identityKinds[o.GetKind()]
		if !ok {
			continue
		}
		var r dynamic.ResourceInterface = dyn.Resource(gvr)
		if ns := o.GetNamespace(); ns != "" {
			r = dyn.Resource(gvr).Namespace(ns)
		} else if o.GetKind() == "ServiceAccount" || o.GetKind() == "ConfigMap" || o.GetKind() == "Role" || o.GetKind() == "RoleBinding" {
			r = dyn.Resource(gvr).Namespace(TetherNamespace)
		}
		if _, err := r.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "helm", Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// ChartProcess is how the chart's Deployment would run one of Tether's binaries, made local: its container's
// arguments with $(VAR) expanded and mounted paths pointing at a folder of the same files, and a kubeconfig of its
// ServiceAccount.
type ChartProcess struct {
	// Args are the container's arguments (without the binary).
	Args []string
	// Mounts maps each mountPath of the container to the folder that holds its files here.
	Mounts map[string]string
	// Kubeconfig holds a token of the Deployment's ServiceAccount.
	Kubeconfig string
	// ServiceAccount is that ServiceAccount's name.
	ServiceAccount string
}

// File is the local path of path inside the container.
func (p *ChartProcess) File(path string) string { return rewritePath(path, p.Mounts) }

// FromChart prepares the chart's Deployment deployment to run here: its ConfigMap, Secret and emptyDir volumes are
// written under the state folder (from the host, as a kubelet would mount them), status.podIP is 127.0.0.1, and a
// token of its ServiceAccount is minted (TokenRequest, ChartIdentityTTL) into a kubeconfig. InstallIdentities
// must have run.
func (s *State) FromChart(ctx context.Context, c *Chart, deployment string) (*ChartProcess, error) {
	o := c.Find("Deployment", deployment)
	if o == nil {
		return nil, fmt.Errorf("the rendered chart has no Deployment %s", deployment)
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
		return nil, fmt.Errorf("deployment %s: %w", deployment, err)
	}
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("deployment %s: %d containers, want 1", deployment, len(spec.Containers))
	}
	ctr := spec.Containers[0]
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.Dir, "chart", deployment)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	volumes := map[string]string{}
	for _, v := range spec.Volumes {
		local := filepath.Join(dir, "volumes", v.Name)
		if err := mountVolume(ctx, cs, d.Namespace, v, local); err != nil {
			return nil, fmt.Errorf("deployment %s: volume %s: %w", deployment, v.Name, err)
		}
		volumes[v.Name] = local
	}
	p := &ChartProcess{Mounts: map[string]string{}, ServiceAccount: spec.ServiceAccountName}
	for _, m := range ctr.VolumeMounts {
		local, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("deployment %s: mount of unknown volume %s", deployment, m.Name)
		}
		p.Mounts[m.MountPath] = filepath.Join(local, m.SubPath)
	}
	env, err := containerEnv(d.Name, d.Namespace, ctr)
	if err != nil {
		return nil, fmt.Errorf("deployment %s: %w", deployment, err)
	}
	for _, a := range ctr.Args {
		p.Args = append(p.Args, rewritePath(expandEnv(a, env), p.Mounts))
	}
	if p.ServiceAccount == "" {
		return nil, fmt.Errorf("deployment %s: no serviceAccountName", deployment)
	}
	p.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := s.writeIdentityKubeconfig(ctx, cs, d.Namespace, p.ServiceAccount, p.Kubeconfig); err != nil {
		return nil, fmt.Errorf("deployment %s: %w", deployment, err)
	}
	return p, nil
}

// mountVolume writes the files of a ConfigMap, Secret or emptyDir volume into dir.
func mountVolume(ctx context.Context, cs kubernetes.Interface, ns string, v corev1.Volume, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var data map[string][]byte
	var items []corev1.KeyToPath
	switch {
	case v.EmptyDir != nil:
		return nil
	case v.ConfigMap != nil:
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		data = map[string][]byte{}
		for k, s := range cm.Data {
			data[k] = []byte(s)
		}
		items = v.ConfigMap.Items
	case v.Secret != nil:
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		data, items = sec.Data, v.Secret.Items
	default:
		return errors.New("only configMap, secret and emptyDir volumes run here")
	}
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("no key %s", it.Key)
		}
		p := filepath.Join(dir, it.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// containerEnv resolves the container's plain and downward-API variables as a kubelet would for a pod named after
// the Deployment, with IP 127.0.0.1.
func containerEnv(name, ns string, c corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandEnv(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP", "status.hostIP":
				env[e.Name] = "127.0.0.1"
			case "metadata.name":
				env[e.Name] = name + "-0"
			case "metadata.namespace":
				env[e.Name] = ns
			default:
				return nil, fmt.Errorf("env %s: field %s does not run here", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			return nil, fmt.Errorf("env %s: only values and fields run here", e.Name)
		}
	}
	return env, nil
}

// expandEnv replaces $(VAR) of a container's arguments, as the kubelet does; unknown ones stay.
func expandEnv(s string, env map[string]string) string {
	for k, v := range env {
		s = strings.ReplaceAll(s, "$("+k+")", v)
	}
	return s
}

// rewritePath points a container path in an argument (PATH or --flag=PATH) at its local folder, longest mount
// first.
func rewritePath(arg string, mounts map[string]string) string {
	flag, val := "", arg
	if i := strings.Index(arg, "="); i >= 0 && strings.HasPrefix(arg, "-") {
		flag, val = arg[:i+1], arg[i+1:]
	}
	paths := make([]string, 0, len(mounts))
	for p := range mounts {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		if val == p || strings.HasPrefix(val, p+"/") {
			return flag + mounts[p] + val[len(p):]
		}
	}
	return arg
}

// writeIdentityKubeconfig mints a token of ServiceAccount ns/sa and writes a kubeconfig of the host with it.
func (s *State) writeIdentityKubeconfig(ctx context.Context, cs kubernetes.Interface, ns, sa, path string) error {
	ttl := int64(ChartIdentityTTL / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token of ServiceAccount %s/%s: %w", ns, sa, err)
	}
	admin, err := clientcmd.LoadFromFile(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	cur := admin.Contexts[admin.CurrentContext]
	if cur == nil || admin.Clusters[cur.Cluster] == nil {
		return fmt.Errorf("%s: no current context", s.Host().Kubeconfig)
	}
	cluster := admin.Clusters[cur.Cluster]
	kc := clientcmdapi.NewConfig()
	kc.Clusters["host"] = &clientcmdapi.Cluster{Server: cluster.Server, CertificateAuthorityData: cluster.CertificateAuthorityData,
		CertificateAuthority: cluster.CertificateAuthority}
	kc.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[sa] = &clientcmdapi.Context{Cluster: "host", AuthInfo: sa, Namespace: ns}
	kc.CurrentContext = sa
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*kc, path)
}

// JoinMembers joins every member with `tetherctl join` (the binary tetherctl) as its administrator, the harness's
// kubeconfig of the member: member i (from 0) gets the kubelet API port kubeletPort+i (see TetherNodeArgs).
func (s *State) JoinMembers(ctx context.Context, tetherctl string, kubeletPort int) error {
	for i, m := range s.Members() {
		args := []string{"join", m.Name, "--member-kubeconfig", m.Kubeconfig, "--kubeconfig", s.Host().Kubeconfig,
			"--namespace", TetherNamespace}
		if i > 0 {
			args = append(args, "--kubelet-port", fmt.Sprint(kubeletPort+i))
		}
		cmd := exec.CommandContext(ctx, tetherctl, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("tetherctl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// ChartValues are the values the sandbox and the e2e suites render the chart with: every component, the kubelet
// client CA of the harness, and then extra.
func ChartValues(extra ...string) []string {
	return slices.Concat([]string{"descheduler.enabled=true", "scheduler.enabled=true",
		"node.kubelet.clientCA.configMap=" + KubeletClientCAConfigMap}, extra)
}

// KubeletClientCAConfigMap is the host ConfigMap in Tether's namespace that holds the CA of the host apiserver's
// kubelet client certificate (key ca.crt), written by EnsureKubeletClientCA for the chart's
// node.kubelet.clientCA.configMap.
const KubeletClientCAConfigMap = "tether-kubelet-client-ca"

// EnsureKubeletClientCA writes KubeletClientCAConfigMap from the harness's KubeletClientCA.
func (s *State) EnsureKubeletClientCA(ctx context.Context) error {
	ca, err := os.ReadFile(s.KubeletClientCA)
	if err != nil {
		return err
	}
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	if err := s.EnsureNamespace(ctx, TetherNamespace, nil); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: KubeletClientCAConfigMap, Namespace: TetherNamespace, Labels: api.ManagedLabels()},
		Data: map[string]string{"ca.crt": string(ca)}}
	cms := cs.CoreV1().ConfigMaps(TetherNamespace)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err == nil {
		return nil
	}
	_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	return err
}

// EnsureHelm returns the helm binary that hack/tools/helm.sh builds from its pin into the tools cache (once).
func EnsureHelm(ctx context.Context, repo string, log io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, "hack", "tools", "helm.sh"))
	cmd.Stderr = log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("step tools: hack/tools/helm.sh: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "helm"), nil
}

// InstallChart renders the chart of repo with ChartValues(values...), writes KubeletClientCAConfigMap and installs
// the chart's identities into the host.
func (s *State) InstallChart(ctx context.Context, helm, repo string, values ...string) (*Chart, error) {
	c, err := RenderChart(ctx, helm, filepath.Join(repo, ChartDir), ChartValues(values...)...)
	if err != nil {
		return nil, err
	}
	if err := s.EnsureKubeletClientCA(ctx); err != nil {
		return nil, err
	}
	if err := s.InstallIdentities(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// ChartNodeArgs are tether-node's arguments as the chart runs it (its identity, members from Secrets, leader
// election), listening here: the kubelet API on 127.0.0.1:kubeletPort (member i from 0 on kubeletPort+i, as
// JoinMembers annotates them), no metrics listener (two tether-nodes on one machine would collide on it); then extra.
func (s *State) ChartNodeArgs(ctx context.Context, c *Chart, bin string, kubeletPort int, extra ...string) ([]string, error) {
	p, err := s.FromChart(ctx, c, TetherNode)
	if err != nil {
		return nil, err
	}
	return slices.Concat([]string{bin}, p.Args, []string{"--kubeconfig", p.Kubeconfig, "--kubelet-bind-address", "127.0.0.1",
		"--kubelet-port", fmt.Sprint(kubeletPort), "--metrics-address", ""}, extra), nil
}

// ChartWebhookArgs are tether-webhook's arguments as the chart runs it, serving on 127.0.0.1:port (health on
// healthPort) with its configuration pointed there; then extra.
func (s *State) ChartWebhookArgs(ctx context.Context, c *Chart, bin string, port, healthPort int, extra ...string) ([]string, error) {
	p, err := s.FromChart(ctx, c, TetherWebhook)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return slices.Concat([]string{bin}, p.Args, []string{"--kubeconfig", p.Kubeconfig, "--listen-address", addr, "--health-address", fmt.Sprintf("127.0.0.1:%d", healthPort),
		"--ip-addresses", "127.0.0.1", "--url", "https://" + addr + "/mutate"}, extra), nil
}

// ChartDeschedulerArgs are tether-descheduler's arguments as the chart runs it (its policy from the chart's
// ConfigMap), its metrics on https://127.0.0.1:port; then extra.
func (s *State) ChartDeschedulerArgs(ctx context.Context, c *Chart, bin string, port int, extra ...string) ([]string, error) {
	p, err := s.FromChart(ctx, c, TetherDescheduler)
	if err != nil {
		return nil, err
	}
	return slices.Concat([]string{bin}, p.Args, []string{"--kubeconfig", p.Kubeconfig, "--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port)}, extra), nil
}

// ChartSchedulerArgs are tether-scheduler's arguments as the chart runs it: the chart's KubeSchedulerConfiguration
// with its identity's kubeconfig and client limits qps and burst written in (kube-scheduler takes them from the
// file only), health and metrics on https://127.0.0.1:port; then extra.
func (s *State) ChartSchedulerArgs(ctx context.Context, c *Chart, bin string, port int, qps float64, burst int, extra ...string) ([]string, error) {
	p, err := s.FromChart(ctx, c, TetherScheduler)
	if err != nil {
		return nil, err
	}
	var config string
	for _, a := range p.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			config = v
		}
	}
	if config == "" {
		return nil, errors.New("tether-scheduler: the chart passes no --config=")
	}
	raw, err := os.ReadFile(config)
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("tether-scheduler: %s: %w", config, err)
	}
	cfg["clientConnection"] = map[string]any{"kubeconfig": p.Kubeconfig, "qps": qps, "burst": burst}
	if raw, err = yaml.Marshal(cfg); err != nil {
		return nil, err
	}
	if err := os.WriteFile(config, raw, 0o600); err != nil {
		return nil, err
	}
	return slices.Concat([]string{bin}, p.Args, []string{"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port)}, extra), nil
}
