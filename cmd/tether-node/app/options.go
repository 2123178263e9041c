// Package app is tether-node's command: flags, the host connection, the member registry and one virtual node per
// member, all in one process.
package app

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
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
	fs.StringVar(&o.DebugAddress, "debug-address", o.DebugAddress, "HTTP address (host:port) of /metrics (Go runtime, process, API requests by apiserver, verb and resource) and /debug/pprof/, without authentication: bind it to loopback; empty: off")
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
	return members, errors.Join(errs...)
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
