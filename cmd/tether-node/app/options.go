// Package app is tether-node's command: flags, the host connection, the member registry and one virtual node per
// member, all in one process.
package app

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/registry"
)

// Options are tether-node's flags. Defaults do not cap a 1,000-pod burst: client-go would fall back to 5 QPS and
// virtual-kubelet's queues to 10/s when nothing is set.
type Options struct {
	// NodeSettings shape every virtual node (node prefix, kubelet address and ports, member client and queue
	// limits, intervals).
	registry.NodeSettings

	Kubeconfig    string
	Members       []string // NAME=KUBECONFIG
	Namespace     string
	MemberSecrets bool
	ClusterID     string
	MemberPorts   []string // NAME=PORT
	RotateServing bool
	ServingSecret string
	TLSCertFile   string
	TLSKeyFile    string
	ClientCAFile  string
	AnonymousAuth bool
	HostQPS       float32
	HostBurst     int

	MemberStartTimeout time.Duration
	MemberRetryMax     time.Duration
	LogLevel           string
	DebugAddress       string
	MetricsAddress     string

	// LeaderElection runs tether-node as one of several replicas: only the holder of the Lease serves.
	LeaderElection LeaderElection
}

// LeaderElection are the --leader-elect flags.
type LeaderElection struct {
	Enabled       bool
	ResourceName  string
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		NodeSettings: registry.NodeSettings{
			NodePrefix:           api.DefaultNodePrefix,
			KubeletAddress:       "127.0.0.1",
			KubeletPort:          10250,
			KubeletBind:          "0.0.0.0",
			MemberQPS:            500,
			MemberBurst:          1000,
			QueueQPS:             1000,
			QueueBurst:           2000,
			PodWorkers:           20,
			Resync:               5 * time.Minute,
			HealthInterval:       5 * time.Second,
			HealthTimeout:        3 * time.Second,
			CapacityDebounce:     time.Second,
			NodeStatusInterval:   30 * time.Second,
			LeaseDuration:        40,
			RepairInterval:       30 * time.Second,
			PodSyncRetries:       20,
			CopyGrace:            2 * time.Minute,
			MemberRequestTimeout: 30 * time.Second,
			DeniedNamespaces:     []string{metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease, api.DefaultNamespace},
		},
		Namespace:          api.DefaultNamespace,
		MemberSecrets:      true,
		ServingSecret:      "tether-node-serving-cert",
		HostQPS:            500,
		HostBurst:          1000,
		MemberStartTimeout: time.Minute,
		MemberRetryMax:     2 * time.Minute,
		LogLevel:           "info",
		MetricsAddress:     ":" + strconv.Itoa(api.DefaultMetricsPort),
		LeaderElection: LeaderElection{
			ResourceName:  api.LeaderElectionLease,
			LeaseDuration: api.DefaultLeaseDuration,
			RenewDeadline: api.DefaultRenewDeadline,
			RetryPeriod:   api.DefaultRetryPeriod,
		},
	}
}

// AddFlags registers every option.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the host cluster (default: in-cluster config, then $KUBECONFIG)")
	fs.StringArrayVar(&o.Members, "member", o.Members, "a member cluster, NAME=KUBECONFIG (repeatable); more come from labelled Secrets")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Tether's namespace in the host, where member Secrets live")
	fs.BoolVar(&o.MemberSecrets, "member-secrets", o.MemberSecrets, "serve members from host Secrets labelled tether.io/member (key kubeconfig) in --namespace, added and removed at runtime")
	fs.BoolVar(&o.OffloadDaemonSetPods, "offload-daemonset-pods", o.OffloadDaemonSetPods, "run DaemonSet pods that land on a virtual node (their DaemonSet tolerates every taint) in the member; by default they wait with an event")
	fs.StringSliceVar(&o.DeniedNamespaces, "denied-namespaces", o.DeniedNamespaces, "namespaces tether-node never uses in members: host pods in them stay Pending with an event (DeniedNamespace)")
	fs.StringVar(&o.ClusterID, "cluster-id", o.ClusterID, "name of the host cluster in ownership labels (default: UID of the host's kube-system namespace)")
	fs.StringVar(&o.NodePrefix, api.FlagNodePrefix, o.NodePrefix, "virtual nodes are named <prefix><member>")
	fs.StringSliceVar(&o.KeepLabelKeys, api.FlagKeepLabelKeys, o.KeepLabelKeys, "label keys that describe virtual nodes, in addition to tether.io/member, type and kubernetes.io/hostname (same flag as tether-webhook)")
	fs.StringVar(&o.KubeletAddress, "kubelet-address", o.KubeletAddress, "InternalIP of the virtual nodes: where the host apiserver reaches tether-node's kubelet API")
	fs.Int32Var(&o.KubeletPort, "kubelet-port", o.KubeletPort, "port of tether-node's kubelet API, published on the virtual nodes")
	fs.StringVar(&o.KubeletBind, "kubelet-bind-address", o.KubeletBind, "address the kubelet API listens on (port --kubelet-port)")
	fs.StringArrayVar(&o.MemberPorts, "member-kubelet-port", o.MemberPorts, "a kubelet API port of its own for one member's virtual node, NAME=PORT (repeatable; Secret members: annotation tether.io/kubelet-port): node-level endpoints (/stats/summary, /metrics/resource) carry no node name, so nodes sharing a port answer them together")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "serving certificate of the kubelet API (default: --rotate-server-certificates, else self-signed for --kubelet-address; the host apiserver does not verify kubelet certificates unless given --kubelet-certificate-authority)")
	fs.BoolVar(&o.RotateServing, "rotate-server-certificates", o.RotateServing, "request the kubelet API's serving certificate from the host with a CertificateSigningRequest (signer kubernetes.io/kubelet-serving; an administrator approves it) and renew it before it expires")
	fs.StringVar(&o.ServingSecret, "serving-cert-secret", o.ServingSecret, "Secret in --namespace that keeps the certificate of --rotate-server-certificates across restarts")
	fs.StringVar(&o.TLSKeyFile, "tls-private-key-file", o.TLSKeyFile, "key of --tls-cert-file")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "CA that signs client certificates the kubelet API accepts (the host apiserver's --kubelet-client-certificate); bearer tokens are checked with TokenReview")
	fs.BoolVar(&o.AnonymousAuth, "anonymous-auth", o.AnonymousAuth, "let requests without credentials through as system:anonymous (still authorized); off by default")
	fs.Float32Var(&o.HostQPS, "host-qps", o.HostQPS, "client QPS towards the host apiserver")
	fs.IntVar(&o.HostBurst, "host-burst", o.HostBurst, "client burst towards the host apiserver")
	fs.Float32Var(&o.MemberQPS, "member-qps", o.MemberQPS, "client QPS towards each member apiserver")
	fs.IntVar(&o.MemberBurst, "member-burst", o.MemberBurst, "client burst towards each member apiserver")
	fs.Float64Var(&o.QueueQPS, "queue-qps", o.QueueQPS, "rate of each pod controller work queue (items per second)")
	fs.IntVar(&o.QueueBurst, "queue-burst", o.QueueBurst, "burst of each pod controller work queue")
	fs.IntVar(&o.PodWorkers, "pod-workers", o.PodWorkers, "pod sync workers per virtual node")
	fs.DurationVar(&o.Resync, "resync", o.Resync, "informer resync period (the periodic full reconcile)")
	fs.DurationVar(&o.HealthInterval, "health-interval", o.HealthInterval, "how often each member's /readyz is probed")
	fs.DurationVar(&o.HealthTimeout, "health-timeout", o.HealthTimeout, "timeout of one /readyz probe")
	fs.DurationVar(&o.CapacityDebounce, "capacity-debounce", o.CapacityDebounce, "least time between two capacity recomputations of a node")
	fs.DurationVar(&o.NodeStatusInterval, "node-status-interval", o.NodeStatusInterval, "how often node status is written when nothing changed")
	fs.DurationVar(&o.RepairInterval, "repair-interval", o.RepairInterval, "how often the repair pass compares host pods and member pods from the caches and puts right what the pod controller gave up on")
	fs.DurationVar(&o.CopyGrace, "copy-grace", o.CopyGrace, "how long a member copy (ConfigMap, Secret, ServiceAccount, a namespace's Services) and a member namespace Tether created stay once no Tether pod on that member uses them (or the host object is gone)")
	fs.IntVar(&o.PodSyncRetries, "pod-sync-retries", o.PodSyncRetries, "how often the pod controller retries one pod (with backoff from 5ms to 1m) before it leaves the pod to the repair pass")
	fs.DurationVar(&o.MemberRequestTimeout, "member-request-timeout", o.MemberRequestTimeout, "longest wait for one request of the pod path to a member apiserver (creates, deletes, copies); a member that hangs fails it and the work is retried; 0: no limit")
	fs.Int32Var(&o.LeaseDuration, "lease-duration", o.LeaseDuration, "node lease duration in seconds")
	fs.DurationVar(&o.MemberStartTimeout, "member-start-timeout", o.MemberStartTimeout, "how long a member may take to sync before it is reported (event MemberNotSynced on its Secret, log, metric); it keeps trying")
	fs.DurationVar(&o.MemberRetryMax, "member-retry-max", o.MemberRetryMax, "longest wait before a failed member is started again (the wait doubles from 1s up to this)")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&o.DebugAddress, "debug-address", o.DebugAddress, "HTTP address (host:port) of /debug/pprof/ (and the same /metrics as --metrics-address), without authentication: bind it to loopback; empty: off")
	fs.StringVar(&o.MetricsAddress, "metrics-address", o.MetricsAddress, "HTTP address (host:port) of Prometheus /metrics (tether_node_*, Go runtime, process) and /healthz (fails for a leader that stopped renewing its Lease), without authentication; empty: off")
	le := &o.LeaderElection
	fs.BoolVar(&le.Enabled, "leader-elect", le.Enabled, "run as one of several replicas: only the holder of a Lease in --namespace serves the virtual nodes and the kubelet API, the others wait to take over; a leader that loses the lease exits non-zero")
	fs.StringVar(&le.ResourceName, "leader-elect-resource-name", le.ResourceName, "name of the Lease in --namespace that the replicas elect their leader with")
	fs.StringVar(&le.Identity, "leader-elect-identity", le.Identity, "this replica's identity in the Lease (default: hostname and a random suffix)")
	fs.DurationVar(&le.LeaseDuration, "leader-elect-lease-duration", le.LeaseDuration, "how long a standby waits after the leader's last renewal before it takes the lease")
	fs.DurationVar(&le.RenewDeadline, "leader-elect-renew-deadline", le.RenewDeadline, "how long the leader tries to renew the lease before it stops serving; shorter than --leader-elect-lease-duration")
	fs.DurationVar(&le.RetryPeriod, "leader-elect-retry-period", le.RetryPeriod, "interval between two tries to take or renew the lease; its 1.2-fold is shorter than --leader-elect-renew-deadline")
}

// MemberFlag is one --member value.
type MemberFlag struct{ Name, Kubeconfig string }

// Validate checks every option and returns all problems at once, with the parsed --member values.
func (o *Options) Validate() ([]MemberFlag, error) {
	var errs []error
	var members []MemberFlag
	seen := map[string]bool{}
	for _, m := range o.Members {
		name, path, ok := strings.Cut(m, "=")
		switch {
		case !ok || name == "" || path == "":
			errs = append(errs, fmt.Errorf("--member %q: want NAME=KUBECONFIG", m))
			continue
		case registry.ValidateMemberName(name, o.NodePrefix) != nil:
			errs = append(errs, fmt.Errorf("--member %q: %w", m, registry.ValidateMemberName(name, o.NodePrefix)))
		case seen[name]:
			errs = append(errs, fmt.Errorf("--member %q: member %s given twice", m, name))
		}
		seen[name] = true
		members = append(members, MemberFlag{name, path})
	}
	if len(members) == 0 && !o.MemberSecrets {
		errs = append(errs, errors.New("no members: give --member or keep --member-secrets"))
	}
	if net.ParseIP(o.KubeletAddress) == nil {
		errs = append(errs, fmt.Errorf("--kubelet-address %q: not an IP address", o.KubeletAddress))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file go together"))
	}
	if o.RotateServing && o.TLSCertFile != "" {
		errs = append(errs, errors.New("--rotate-server-certificates and --tls-cert-file exclude each other"))
	}
	ports, err := parseMemberPorts(o.MemberPorts)
	if err != nil {
		errs = append(errs, err)
	}
	owner := map[int32]string{}
	for _, name := range slices.Sorted(maps.Keys(ports)) {
		p := ports[name]
		switch {
		case !seen[name]:
			errs = append(errs, fmt.Errorf("--member-kubelet-port %s=%d: no --member %s (members from Secrets take annotation %s)", name, p, name, api.AnnotationKubeletPort))
		case owner[p] != "":
			errs = append(errs, fmt.Errorf("--member-kubelet-port %s=%d: port already given to %s", name, p, owner[p]))
		}
		owner[p] = name
	}
	if net.ParseIP(o.KubeletBind) == nil {
		errs = append(errs, fmt.Errorf("--kubelet-bind-address %q: not an IP address", o.KubeletBind))
	}
	if o.KubeletPort <= 0 || o.KubeletPort > 65535 {
		errs = append(errs, fmt.Errorf("--kubelet-port %d: out of range", o.KubeletPort))
	}
	for _, p := range []struct {
		name string
		ok   bool
	}{
		{"--host-qps", o.HostQPS > 0}, {"--host-burst", o.HostBurst > 0}, {"--member-qps", o.MemberQPS > 0},
		{"--member-burst", o.MemberBurst > 0}, {"--queue-qps", o.QueueQPS > 0}, {"--queue-burst", o.QueueBurst > 0},
		{"--pod-workers", o.PodWorkers > 0}, {"--pod-sync-retries", o.PodSyncRetries > 0},
		{"--member-request-timeout", o.MemberRequestTimeout >= 0}, {"--copy-grace", o.CopyGrace >= 0},
		{"--health-interval", o.HealthInterval > 0}, {"--health-timeout", o.HealthTimeout > 0},
		{"--capacity-debounce", o.CapacityDebounce >= 0}, {"--node-status-interval", o.NodeStatusInterval > 0},
		{"--lease-duration", o.LeaseDuration > 0}, {"--resync", o.Resync >= 0},
		{"--member-start-timeout", o.MemberStartTimeout > 0}, {"--repair-interval", o.RepairInterval > 0}, {"--member-retry-max", o.MemberRetryMax >= time.Second},
	} {
		if !p.ok {
			errs = append(errs, fmt.Errorf("%s: must be positive", p.name))
		}
	}
	for _, ns := range o.DeniedNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--denied-namespaces %q: not a namespace name: %s", ns, strings.Join(msgs, "; ")))
		}
	}
	if msgs := validation.IsValidLabelValue(o.ClusterID); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--cluster-id %q: it is a label value: %s", o.ClusterID, strings.Join(msgs, "; ")))
	}
	if err := api.NewHostLevel(o.NodePrefix, o.KeepLabelKeys).Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, a := range []struct{ flag, addr string }{{"--metrics-address", o.MetricsAddress}, {"--debug-address", o.DebugAddress}} {
		if a.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port: %w", a.flag, a.addr, err))
		} else if _, err := parseListenPort(port); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", a.flag, a.addr, err))
		}
	}
	if o.MetricsAddress != "" && o.MetricsAddress == o.DebugAddress {
		errs = append(errs, fmt.Errorf("--metrics-address and --debug-address %q: one port each", o.MetricsAddress))
	}
	errs = append(errs, o.LeaderElection.validate(o.Namespace)...)
	return members, errors.Join(errs...)
}

// validate checks the leader election flags (only when it is on).
func (le LeaderElection) validate(namespace string) []error {
	if !le.Enabled {
		return nil
	}
	var errs []error
	if namespace == "" {
		errs = append(errs, errors.New("--leader-elect needs --namespace (where its Lease lives)"))
	}
	if msgs := validation.IsDNS1123Subdomain(le.ResourceName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--leader-elect-resource-name %q: not a Lease name: %s", le.ResourceName, strings.Join(msgs, "; ")))
	}
	positive := true
	for _, d := range []struct {
		flag string
		d    time.Duration
	}{{"--leader-elect-lease-duration", le.LeaseDuration}, {"--leader-elect-renew-deadline", le.RenewDeadline}, {"--leader-elect-retry-period", le.RetryPeriod}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.flag, d.d))
			positive = false
		}
	}
	if !positive {
		return errs
	}
	if le.RenewDeadline >= le.LeaseDuration {
		errs = append(errs, fmt.Errorf("--leader-elect-renew-deadline %s: must be shorter than --leader-elect-lease-duration %s", le.RenewDeadline, le.LeaseDuration))
	}
	if jittered := time.Duration(api.LeaseJitterFactor * float64(le.RetryPeriod)); jittered >= le.RenewDeadline {
		errs = append(errs, fmt.Errorf("--leader-elect-retry-period %s: %.1f times it (%s) must be shorter than --leader-elect-renew-deadline %s",
			le.RetryPeriod, api.LeaseJitterFactor, jittered, le.RenewDeadline))
	}
	return errs
}

// parseListenPort reads the port of a listen address: 0 (any free port) to 65535.
func parseListenPort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 0 to 65535", s)
	}
	return p, nil
}

// parseMemberPorts reads the --member-kubelet-port values.
func parseMemberPorts(values []string) (map[string]int32, error) {
	out := map[string]int32{}
	var errs []error
	for _, v := range values {
		name, port, ok := strings.Cut(v, "=")
		p, err := registry.ParsePort(port)
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("--member-kubelet-port %q: want NAME=PORT", v))
		case err != nil:
			errs = append(errs, fmt.Errorf("--member-kubelet-port %q: %w", v, err))
		default:
			out[name] = p
		}
	}
	return out, errors.Join(errs...)
}
