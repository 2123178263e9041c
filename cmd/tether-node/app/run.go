package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/cli"
	"github.com/tetherkube/tether/provider"
	"github.com/tetherkube/tether/provider/kubelet"
	"github.com/tetherkube/tether/provider/registry"
)

// NewCommand is tether-node's command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "tether-node",
		Short: "Serve member clusters as virtual nodes of the host cluster",
		Long: `tether-node serves every member cluster as one virtual node of the host cluster, in one process.
A pod the host scheduler binds to a virtual node is created in its member; its status comes back.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			members, err := o.Validate()
			if err != nil {
				return err
			}
			ctx, err := cli.WithLogger(cmd.Context(), o.LogLevel)
			if err != nil {
				return err
			}
			return Run(ctx, o, members)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run serves the members until ctx ends. With --leader-elect it first waits to hold the leader Lease, and returns
// ErrLeaseLost (after it stopped serving) when it loses it.
func Run(ctx context.Context, o *Options, flagMembers []MemberFlag) error {
	metricsRegistry, leader, err := newMetrics()
	if err != nil {
		return err
	}
	// A leader whose elector stopped renewing the Lease fails /healthz (a standby passes it).
	var watchdog *leaderelection.HealthzAdaptor
	checks := []healthz.HealthChecker{healthz.PingHealthz}
	if o.LeaderElection.Enabled {
		watchdog = leaderelection.NewLeaderHealthzAdaptor(leaderHealthzTolerance)
		checks = append(checks, watchdog)
	}
	// Before any client exists, so that every request is counted; a standby serves them too (tether_node_leader 0).
	if o.MetricsAddress != "" {
		if err := serveMetrics(ctx, o.MetricsAddress, metricsRegistry, checks...); err != nil {
			return fmt.Errorf("--metrics-address %s: %w", o.MetricsAddress, err)
		}
	}
	if o.DebugAddress != "" {
		if err := serveDebug(ctx, o.DebugAddress, metricsRegistry); err != nil {
			return fmt.Errorf("--debug-address %s: %w", o.DebugAddress, err)
		}
	}
	hostCfg, err := cli.HostConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	hostCfg.QPS, hostCfg.Burst = o.HostQPS, o.HostBurst
	hostCfg.UserAgent = "tether-node"
	host, err := kubernetes.NewForConfig(hostCfg)
	if err != nil {
		return err
	}
	clusterID := o.ClusterID
	if clusterID == "" {
		ns, err := host.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the host's kube-system namespace for --cluster-id: %w", err)
		}
		clusterID = string(ns.UID)
	}
	log.G(ctx).WithField("clusterID", clusterID).Info("tether-node starting")
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: host.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "tether-node"})

	lead := func(ctx context.Context) error {
		leader.Set(1)
		defer leader.Set(0)
		return serve(ctx, o, host, clusterID, recorder, metricsRegistry, flagMembers)
	}
	if !o.LeaderElection.Enabled {
		return lead(ctx)
	}
	return runElected(ctx, o.LeaderElection, o.Namespace, host, recorder, watchdog, lead)
}

// serve runs the host informers, the member registry (a virtual node per member) and the kubelet API until ctx
// ends. It runs once per process: the registry registers its metrics with metricsRegistry.
func serve(ctx context.Context, o *Options, host kubernetes.Interface, clusterID string, recorder record.EventRecorder,
	metricsRegistry *prometheus.Registry, flagMembers []MemberFlag) error {
	// One host pod informer for every virtual node: pods bound to some node. ConfigMaps, Secrets,
	// ServiceAccounts, Services and EndpointSlices feed the copies made in members.
	podFactory := informers.NewSharedInformerFactoryWithOptions(host, o.Resync, informers.WithTransform(provider.TrimForCache),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	depFactory := informers.NewSharedInformerFactoryWithOptions(host, o.Resync, informers.WithTransform(provider.TrimForCache))
	// The PersistentVolumes Tether provisioned for this host (controllers/volumes).
	volFactory := informers.NewSharedInformerFactoryWithOptions(host, o.Resync, informers.WithTransform(provider.TrimForCache),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.LabelSelector = api.LabelManagedBy + "=" + api.ManagedByTether + "," + api.LabelHostCluster + "=" + clusterID
		}))
	hostPods := podFactory.Core().V1().Pods()
	hostVolumes := volFactory.Core().V1().PersistentVolumes()
	// Informers must be requested before the factory starts.
	synced := []cache.InformerSynced{hostPods.Informer().HasSynced, hostVolumes.Informer().HasSynced,
		depFactory.Core().V1().PersistentVolumeClaims().Informer().HasSynced, depFactory.Storage().V1().StorageClasses().Informer().HasSynced,
		depFactory.Core().V1().ConfigMaps().Informer().HasSynced, depFactory.Core().V1().Secrets().Informer().HasSynced,
		depFactory.Core().V1().Services().Informer().HasSynced, depFactory.Core().V1().ServiceAccounts().Informer().HasSynced,
		depFactory.Discovery().V1().EndpointSlices().Informer().HasSynced}
	podFactory.Start(ctx.Done())
	depFactory.Start(ctx.Done())
	volFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer depFactory.Shutdown()
	defer volFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("host caches did not sync: %w", ctx.Err())
	}

	ports, err := parseMemberPorts(o.MemberPorts)
	if err != nil {
		return err
	}
	var members []registry.Member
	for _, m := range flagMembers {
		cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
		if err != nil {
			return fmt.Errorf("--member %s=%s: %w", m.Name, m.Kubeconfig, err)
		}
		members = append(members, registry.Member{Name: m.Name, Config: cfg, Port: ports[m.Name]})
	}
	// The kubelet API server routes through the registry, and serves the members' own ports for it.
	var srv *kubelet.Server
	reg, err := registry.New(registry.Config{
		Host:                host,
		ClusterID:           clusterID,
		HostPods:            hostPods,
		HostConfigMaps:      depFactory.Core().V1().ConfigMaps(),
		HostSecrets:         depFactory.Core().V1().Secrets(),
		HostServices:        depFactory.Core().V1().Services(),
		HostServiceAccounts: depFactory.Core().V1().ServiceAccounts(),
		HostEndpointSlices:  depFactory.Discovery().V1().EndpointSlices(),
		HostClaims:          depFactory.Core().V1().PersistentVolumeClaims(),
		HostVolumes:         hostVolumes,
		HostClasses:         depFactory.Storage().V1().StorageClasses(),
		Recorder:            recorder,
		Kubelet:             registry.ListenerFunc(func(ctx context.Context, addr string) error { return srv.Serve(ctx, addr) }),
		Metrics:             metricsRegistry,
		Members:             members,
		MemberSecrets:       o.MemberSecrets,
		Namespace:           o.Namespace,
		Resync:              o.Resync,
		StartTimeout:        o.MemberStartTimeout,
		RetryMax:            o.MemberRetryMax,
		Node:                o.NodeSettings,
	})
	if err != nil {
		return err
	}
	serverCfg := kubelet.ServerConfig{
		CertFile:      o.TLSCertFile,
		KeyFile:       o.TLSKeyFile,
		SelfSignedIPs: []net.IP{net.ParseIP(o.KubeletAddress)},
		ClientCAFile:  o.ClientCAFile,
		Anonymous:     o.AnonymousAuth,
		HostClient:    host,
		NodeOf:        reg.NodeOf,
		Relay:         &kubelet.Relay{Router: reg, Pods: reg.Pods},
	}
	if o.RotateServing {
		serverCfg.CSR = &kubelet.CSRConfig{Client: host, Name: "tether-node", IPs: []net.IP{net.ParseIP(o.KubeletAddress)},
			Namespace: o.Namespace, Secret: o.ServingSecret}
	}
	// The server exists before any member: a member with a port of its own serves it from its start.
	if srv, err = kubelet.NewServer(ctx, serverCfg); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	regDone := make(chan error, 1)
	go func() { regDone <- reg.Run(ctx) }()
	err = srv.Serve(ctx, net.JoinHostPort(o.KubeletBind, strconv.Itoa(int(o.KubeletPort))))
	log.G(ctx).Info("tether-node stopping")
	cancel()
	return errors.Join(err, <-regDone)
}
