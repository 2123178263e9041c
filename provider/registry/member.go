package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers/copies"
	"github.com/tetherkube/tether/controllers/events"
	"github.com/tetherkube/tether/controllers/namespaces"
	"github.com/tetherkube/tether/controllers/podmeta"
	"github.com/tetherkube/tether/controllers/services"
	"github.com/tetherkube/tether/controllers/volumes"
	"github.com/tetherkube/tether/provider"
	"github.com/tetherkube/tether/provider/kubelet"
)

const sourceFlag = "flag"

func sourceSecret(key string) string { return "secret " + key }

// spec is what a member runs from: its config, and where it came from.
type spec struct {
	Member
	source string
	// kubeconfig is the Secret's raw kubeconfig: a restart happens only when it changes.
	kubeconfig []byte
	// secret names the member Secret for events (metadata only, no data); nil for flags.
	secret *corev1.Secret
}

func (s spec) equal(o spec) bool {
	return s.Name == o.Name && s.source == o.source && s.Port == o.Port && bytes.Equal(s.kubeconfig, o.kubeconfig)
}

// port is the kubelet API port published on the member's node.
func (s spec) port(shared int32) int32 {
	if s.Port != 0 {
		return s.Port
	}
	return shared
}

// running is a served member: its supervisor runs until cancel, then closes done once every goroutine it started
// has returned.
type running struct {
	spec   spec
	cancel context.CancelFunc
	done   chan struct{}
	// serving is the kubelet API's view of the member while it runs (caches synced, pod controller ready); nil
	// otherwise.
	serving atomic.Pointer[kubelet.Member]
	// member is the virtual node of the current run (for the metrics); nil between runs.
	member atomic.Pointer[provider.Member]
}

// ValidateMemberName checks that a member name makes a valid node name and label value.
func ValidateMemberName(name, prefix string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return fmt.Errorf("member name %q: %s", name, strings.Join(msgs, "; "))
	}
	// The node name is a label value too (kubernetes.io/hostname, tether.io/node): at most 63 characters.
	if node := api.NodeName(prefix, name); len(validation.IsValidLabelValue(node)) > 0 {
		return fmt.Errorf("member name %q: node name %s is longer than 63 characters", name, node)
	}
	return nil
}

// specFromSecret reads a member Secret: the member's name, its kubeconfig (self-contained: see
// ParseMemberKubeconfig) and its kubelet port annotation.
func specFromSecret(s *corev1.Secret, prefix string, sharedPort int32, ownPorts bool) (spec, error) {
	name := api.MemberOfSecret(s)
	raw := s.Data[api.MemberSecretKubeconfig]
	var errs []error
	if err := ValidateMemberName(name, prefix); err != nil {
		errs = append(errs, err)
	}
	var port int32
	if v, ok := s.Annotations[api.AnnotationKubeletPort]; ok {
		p, err := ParsePort(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("annotation %s: %w", api.AnnotationKubeletPort, err))
		case p != sharedPort && !ownPorts:
			errs = append(errs, fmt.Errorf("annotation %s: this tether-node serves no kubelet API ports of members", api.AnnotationKubeletPort))
		case p != sharedPort:
			port = p
		}
	}
	var cfg *rest.Config
	if len(raw) == 0 {
		errs = append(errs, fmt.Errorf("secret has no key %s", api.MemberSecretKubeconfig))
	} else {
		var err error
		if cfg, err = ParseMemberKubeconfig(raw); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return spec{}, err
	}
	ref := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, UID: s.UID}}
	return spec{Member: Member{Name: name, Config: cfg, Port: port}, source: sourceSecret(s.Namespace + "/" + s.Name),
		kubeconfig: bytes.Clone(raw), secret: ref}, nil
}

// ParseMemberKubeconfig reads a member Secret's kubeconfig. It must stand alone: its current context's server, CA
// and a token or client certificate inline. Whatever would make tether-node run a program, read a file of its own
// machine or go through a proxy on behalf of whoever can write Secrets in Tether's namespace is refused: exec and
// auth-provider plugins, tokenFile, certificate and key paths, proxy-url.
func ParseMemberKubeconfig(raw []byte) (*rest.Config, error) {
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid kubeconfig: %w", err)
	}
	ctxName := cfg.CurrentContext
	kctx, ok := cfg.Contexts[ctxName]
	if !ok {
		return nil, fmt.Errorf("invalid kubeconfig: current context %q not found", ctxName)
	}
	cluster, user := cfg.Clusters[kctx.Cluster], cfg.AuthInfos[kctx.AuthInfo]
	var errs []error
	refuse := func(what string) { errs = append(errs, fmt.Errorf("%s is not allowed in a member Secret", what)) }
	if cluster == nil {
		errs = append(errs, fmt.Errorf("cluster %q of context %q not found", kctx.Cluster, ctxName))
	} else {
		if cluster.Server == "" {
			errs = append(errs, errors.New("cluster has no server"))
		}
		if cluster.CertificateAuthority != "" {
			refuse("certificate-authority (a file path; use certificate-authority-data)")
		}
		if cluster.ProxyURL != "" {
			refuse("proxy-url")
		}
	}
	if user == nil {
		errs = append(errs, fmt.Errorf("user %q of context %q not found", kctx.AuthInfo, ctxName))
	} else {
		if user.Exec != nil {
			refuse("an exec credential plugin")
		}
		if user.AuthProvider != nil {
			refuse("an auth-provider")
		}
		if user.TokenFile != "" {
			refuse("tokenFile (a file path; use token)")
		}
		if user.ClientCertificate != "" || user.ClientKey != "" {
			refuse("client-certificate or client-key (file paths; use the -data fields)")
		}
		if user.Token == "" && len(user.ClientCertificateData) == 0 {
			errs = append(errs, errors.New("user has no token and no client-certificate-data"))
		}
		if len(user.ClientCertificateData) > 0 && len(user.ClientKeyData) == 0 {
			errs = append(errs, errors.New("client-certificate-data without client-key-data"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("invalid kubeconfig: %w", err)
	}
	return rc, nil
}

// ParsePort reads a TCP port number.
func ParsePort(s string) (int32, error) {
	p, err := strconv.ParseInt(s, 10, 32)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return int32(p), nil
}

// supervise runs a member until ctx ends, starting it again with backoff whenever it fails.
func (r *Registry) supervise(ctx context.Context, run *running) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("member", run.spec.Name))
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := r.runOnce(ctx, run)
		run.serving.Store(nil)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		// A member that ran for a while starts over from the shortest delay.
		if time.Since(began) > r.cfg.RetryMax {
			attempt = 0
		}
		delay := backoff(attempt, r.cfg.RetryBase, r.cfg.RetryMax)
		r.metrics.startFailures.WithLabelValues(run.spec.Name).Inc()
		log.G(ctx).WithError(err).WithField("retryIn", delay.String()).Error("member failed")
		r.event(run.spec, corev1.EventTypeWarning, ReasonMemberStartFailed, "member %s failed, retrying in %s: %v", run.spec.Name, delay, err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is base·2^attempt, at most limit.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := base
	for range attempt {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

func (r *Registry) event(s spec, eventType, reason, format string, args ...any) {
	if s.secret != nil {
		r.cfg.Recorder.Eventf(s.secret, eventType, reason, format, args...)
	}
}

// runOnce runs the member's virtual node: node controller (registration, status, lease), node status loop, member
// caches, pod controller and its own kubelet listener. It returns once all of them have stopped: when ctx ends
// (nil) or one of them fails (its error).
func (r *Registry) runOnce(parent context.Context, run *running) (err error) {
	s, n := run.spec, r.cfg.Node
	cfg := rest.CopyConfig(s.Config)
	cfg.QPS, cfg.Burst = n.MemberQPS, n.MemberBurst
	cfg.UserAgent = "tether-node"
	clients, err := r.cfg.NewClients(cfg)
	if err != nil {
		return fmt.Errorf("member clients: %w", err)
	}
	port := s.port(n.KubeletPort)
	syncErrors := func(err error) { r.metrics.reconcileErrors.WithLabelValues(s.Name, errorReason(err)).Inc() }
	m, err := provider.New(provider.Config{
		Member:               s.Name,
		NodeName:             api.NodeName(n.NodePrefix, s.Name),
		ClusterID:            r.cfg.ClusterID,
		HostLevel:            api.NewHostLevel(n.NodePrefix, n.KeepLabelKeys),
		MemberClient:         clients.Kube,
		HostClient:           r.cfg.Host,
		HostPods:             r.cfg.HostPods.Lister(),
		HostConfigMaps:       r.cfg.HostConfigMaps.Lister(),
		HostSecrets:          r.cfg.HostSecrets.Lister(),
		HostSAs:              r.cfg.HostServiceAccounts.Lister(),
		HostClaims:           claimsLister(r.cfg.HostClaims),
		HostVolumes:          volumesLister(r.cfg.HostVolumes),
		HostClasses:          classesLister(r.cfg.HostClasses),
		Recorder:             r.cfg.Recorder,
		InternalIP:           n.KubeletAddress,
		KubeletPort:          port,
		Resync:               n.Resync,
		HealthInterval:       n.HealthInterval,
		HealthTimeout:        n.HealthTimeout,
		Probe:                clients.Probe,
		CapacityDebounce:     n.CapacityDebounce,
		DeniedNamespaces:     n.DeniedNamespaces,
		OffloadDaemonSetPods: n.OffloadDaemonSetPods,
		RequestTimeout:       n.MemberRequestTimeout,
		StatusDelay:          r.metrics.statusDelay.WithLabelValues(s.Name),
		CreateDelay:          r.metrics.createDelay.WithLabelValues(s.Name),
		OnSyncError:          syncErrors,
	})
	if err != nil {
		return err
	}
	run.member.Store(m)
	defer run.member.Store(nil)

	// The pod controller adds a handler to the shared host pod informer and never removes it: scoped removes it
	// when this run ends, so that restarts leave no listener (and its goroutines) behind.
	scoped := newScopedPodInformer(r.cfg.HostPods)
	ctx, cancel := context.WithCancel(parent)
	var parts sync.WaitGroup
	// In this order at return: stop everything, wait for every goroutine, drop the pod controller's handler, then
	// wait for the member's informers.
	defer m.Shutdown()
	defer scoped.removeHandlers()
	defer parts.Wait()
	defer cancel()
	errs := make(chan error, 4)
	fail := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("%s: %w", what, err)
		}
	}

	nodes := r.cfg.Host.CoreV1().Nodes()
	nc, err := node.NewNodeController(m, m.InitialNode(ctx, min(10*time.Second, r.cfg.StartTimeout)), nodes,
		node.WithNodeEnableLeaseV1(r.cfg.Host.CoordinationV1().Leases(corev1.NamespaceNodeLease), n.LeaseDuration),
		node.WithNodeStatusUpdateInterval(n.NodeStatusInterval),
		node.WithNodeStatusUpdateErrorHandler(func(ctx context.Context, err error) error {
			if !apierrors.IsNotFound(err) {
				return err
			}
			// Someone deleted the node: register it again.
			_, err = nodes.Create(ctx, m.Node(), metav1.CreateOptions{})
			return err
		}),
	)
	if err != nil {
		return err
	}
	limiter := func() workqueue.TypedRateLimiter[any] {
		return workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, time.Minute),
			&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(n.QueueQPS), n.QueueBurst)},
		)
	}
	retry := podSyncRetry(n.PodSyncRetries, syncErrors)
	nodeName := m.NodeName()
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:                                m.HostPodClient(r.cfg.Host.CoreV1()),
		PodInformer:                              scoped,
		EventRecorder:                            warningsOnly{r.cfg.Recorder},
		Provider:                                 m,
		ConfigMapInformer:                        r.cfg.HostConfigMaps,
		SecretInformer:                           r.cfg.HostSecrets,
		ServiceInformer:                          r.cfg.HostServices,
		SyncPodsFromKubernetesRateLimiter:        limiter(),
		DeletePodsFromKubernetesRateLimiter:      limiter(),
		SyncPodStatusFromProviderRateLimiter:     limiter(),
		SyncPodsFromKubernetesShouldRetryFunc:    retry,
		DeletePodsFromKubernetesShouldRetryFunc:  retry,
		SyncPodStatusFromProviderShouldRetryFunc: retry,
		PodEventFilterFunc: func(ctx context.Context, p *corev1.Pod) bool {
			// Between the end of a run and the removal of its handler, events go nowhere.
			return ctx.Err() == nil && p.Spec.NodeName == nodeName
		},
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return err
	}

	parts.Go(func() { fail("node controller", nc.Run(ctx)) })
	parts.Go(func() { m.RunNode(ctx) })
	if s.Port != 0 {
		addr := r.kubeletAddr(port)
		parts.Go(func() { fail("kubelet API on "+addr, r.cfg.Kubelet.Serve(ctx, addr)) })
	}
	parts.Go(func() {
		// An unreachable member keeps its caches waiting (client-go retries with backoff) and its node says
		// MemberUnreachable meanwhile; past StartTimeout it is reported once.
		t := time.AfterFunc(r.cfg.StartTimeout, func() {
			r.metrics.notSynced.WithLabelValues(s.Name).Inc()
			log.G(ctx).WithField("after", r.cfg.StartTimeout.String()).Warn("member caches not synced yet: is the member reachable?")
			r.event(s, corev1.EventTypeWarning, ReasonMemberNotSynced, "member %s: caches not synced after %s (is it reachable?); still trying", s.Name, r.cfg.StartTimeout)
		})
		err := m.Start(ctx)
		t.Stop()
		if err != nil {
			fail("member caches", err)
			return
		}
		parts.Go(func() { fail("pod controller", pc.Run(ctx, n.PodWorkers)) })
		parts.Go(func() { m.RunRepair(ctx, n.RepairInterval, 2) })
		cms, sas := m.CopyInformers()
		cc, err := copies.New(copies.Config{
			Member: s.Name, Owner: m.Owner(), Client: clients.Kube,
			HostPods: r.cfg.HostPods.Informer(), HostConfigMaps: r.cfg.HostConfigMaps.Informer(), HostSecrets: r.cfg.HostSecrets.Informer(),
			HostServiceAccounts: r.cfg.HostServiceAccounts.Informer(),
			ConfigMaps:          cms, Secrets: m.SecretCopies(), ServiceAccounts: sas, Recorder: r.cfg.Recorder, Grace: n.CopyGrace, Resync: n.Resync,
			Metrics: r.controllers,
		})
		if err != nil {
			fail("copy controller", err)
			return
		}
		parts.Go(func() { fail("copy controller", cc.Run(ctx, 8)) })
		svcs, slices := m.ServiceInformers()
		sc, err := services.New(services.Config{Member: s.Name, Owner: m.Owner(), Client: clients.Kube,
			HostPods: r.cfg.HostPods.Informer(), HostServices: r.cfg.HostServices.Informer(), HostSlices: r.cfg.HostEndpointSlices.Informer(),
			Services: svcs, Slices: slices, Recorder: r.cfg.Recorder, Grace: n.CopyGrace, Resync: n.Resync,
			DeniedNamespaces: n.DeniedNamespaces, Metrics: r.controllers})
		if err != nil {
			fail("service controller", err)
			return
		}
		m.SetBeforeFirstPod(sc.EnsureNamespace)
		parts.Go(func() { fail("service controller", sc.Run(ctx, 4)) })
		nsc, err := namespaces.New(namespaces.Config{Member: s.Name, Owner: m.Owner(), Client: clients.Kube,
			HostPods: r.cfg.HostPods.Informer(), Namespaces: m.MemberNamespaces(), Pods: m.MemberPods(),
			Grace: n.CopyGrace, Resync: n.Resync, Metrics: r.controllers})
		if err != nil {
			fail("namespace controller", err)
			return
		}
		parts.Go(func() { fail("namespace controller", nsc.Run(ctx, 1)) })
		if r.cfg.HostClaims != nil {
			vc, err := volumes.New(volumes.Config{Member: s.Name, Owner: m.Owner(), Client: clients.Kube, Host: r.cfg.Host,
				HostClaims: r.cfg.HostClaims.Informer(), HostVolumes: r.cfg.HostVolumes.Informer(), HostClasses: r.cfg.HostClasses.Lister(),
				Claims: m.ClaimInformer(), EnsureNamespace: m.EnsureNamespace, Recorder: r.cfg.Recorder,
				DeniedNamespaces: n.DeniedNamespaces, Resync: n.Resync, Metrics: r.controllers})
			if err != nil {
				fail("volume controller", err)
				return
			}
			parts.Go(func() { fail("volume controller", vc.Run(ctx, 2)) })
		}
		pm, err := podmeta.New(podmeta.Config{Member: s.Name, Owner: m.Owner(), Client: clients.Kube,
			HostPods: r.cfg.HostPods.Informer(), MemberPods: m.MemberPods(), Recorder: r.cfg.Recorder, Metrics: r.controllers})
		if err != nil {
			fail("pod metadata controller", err)
			return
		}
		parts.Go(func() { fail("pod metadata controller", pm.Run(ctx, 2)) })
		parts.Go(func() { fail("event controller", r.runEvents(ctx, s.Name, m, clients.Kube, n.Resync)) })
		select {
		case <-ctx.Done():
			return
		case <-pc.Ready():
		}
		run.serving.Store(&kubelet.Member{Name: s.Name, NodeName: nodeName, Client: clients.Kube, Config: cfg,
			Metrics: clients.Metrics, PodSelector: m.PodSelector(), OwnedPods: m.OwnedPods, HasCopyOf: m.HasCopyOf})
		log.G(ctx).WithField("node", nodeName).WithField("source", s.source).Info("serving member")
	})

	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

func claimsLister(i corev1informers.PersistentVolumeClaimInformer) corev1listers.PersistentVolumeClaimLister {
	if i == nil {
		return nil
	}
	return i.Lister()
}

func volumesLister(i corev1informers.PersistentVolumeInformer) corev1listers.PersistentVolumeLister {
	if i == nil {
		return nil
	}
	return i.Lister()
}

func classesLister(i storageinformers.StorageClassInformer) storagelisters.StorageClassLister {
	if i == nil {
		return nil
	}
	return i.Lister()
}

// scopedPodInformer hands the shared pod informer to one pod controller and remembers the handlers it adds.
type scopedPodInformer struct {
	corev1informers.PodInformer
	inf *scopedInformer
}

func newScopedPodInformer(p corev1informers.PodInformer) *scopedPodInformer {
	return &scopedPodInformer{PodInformer: p, inf: &scopedInformer{SharedIndexInformer: p.Informer()}}
}

func (s *scopedPodInformer) Informer() cache.SharedIndexInformer { return s.inf }

// Lister hands out copies: with SkipDownwardAPIResolution the pod controller changes the pods it gets.
func (s *scopedPodInformer) Lister() corev1listers.PodLister {
	return provider.CopyingPodLister(s.PodInformer.Lister())
}

func (s *scopedPodInformer) removeHandlers() { s.inf.removeAll() }

type scopedInformer struct {
	cache.SharedIndexInformer
	mu   sync.Mutex
	regs []cache.ResourceEventHandlerRegistration
}

func (s *scopedInformer) keep(reg cache.ResourceEventHandlerRegistration, err error) (cache.ResourceEventHandlerRegistration, error) {
	if err == nil {
		s.mu.Lock()
		s.regs = append(s.regs, reg)
		s.mu.Unlock()
	}
	return reg, err
}

func (s *scopedInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	return s.keep(s.SharedIndexInformer.AddEventHandler(h))
}

func (s *scopedInformer) AddEventHandlerWithResyncPeriod(h cache.ResourceEventHandler, p time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	return s.keep(s.SharedIndexInformer.AddEventHandlerWithResyncPeriod(h, p))
}

func (s *scopedInformer) AddEventHandlerWithOptions(h cache.ResourceEventHandler, o cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	return s.keep(s.SharedIndexInformer.AddEventHandlerWithOptions(h, o))
}

func (s *scopedInformer) removeAll() {
	s.mu.Lock()
	regs := s.regs
	s.regs = nil
	s.mu.Unlock()
	for _, reg := range regs {
		_ = s.RemoveEventHandler(reg) // fails only for a registration of another informer
	}
}

// warningsOnly passes on virtual-kubelet's warnings and drops its Normal events ("Create pod in provider
// successfully", …): one host write per pod and per deletion that tells a user nothing the pod's status does not.
type warningsOnly struct{ record.EventRecorder }

func (w warningsOnly) Event(obj runtime.Object, eventtype, reason, message string) {
	if eventtype != corev1.EventTypeNormal {
		w.EventRecorder.Event(obj, eventtype, reason, message)
	}
}

func (w warningsOnly) Eventf(obj runtime.Object, eventtype, reason, format string, args ...any) {
	if eventtype != corev1.EventTypeNormal {
		w.EventRecorder.Eventf(obj, eventtype, reason, format, args...)
	}
}

func (w warningsOnly) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, format string, args ...any) {
	if eventtype != corev1.EventTypeNormal {
		w.EventRecorder.AnnotatedEventf(obj, annotations, eventtype, reason, format, args...)
	}
}

// podSyncRetry retries a failed sync with the queue's backoff up to retries times; then the key is left to the
// repair pass, which never gives up. Every failure is counted by failed.
func podSyncRetry(retries int, failed func(error)) node.ShouldRetryFunc {
	return func(_ context.Context, _ string, tried int, _ time.Time, err error) (*time.Duration, error) {
		failed(err)
		if tried < retries {
			return nil, nil
		}
		return nil, fmt.Errorf("given up after %d tries, left to the repair pass: %w", tried, err)
	}
}

// runEvents relays the member's pod events to the host pods until ctx ends, from an informer of its own (pod events
// only), started and synced here.
func (r *Registry) runEvents(ctx context.Context, member string, m *provider.Member, client kubernetes.Interface, resync time.Duration) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(provider.TrimForCache),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "involvedObject.kind=Pod" }))
	inf := factory.Core().V1().Events().Informer()
	since := time.Now()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil // ctx ended
	}
	// Built once it can run: a controller's queue lives until Run returns.
	ec, err := events.New(events.Config{Member: member, Owner: m.Owner(), Events: inf, MemberPods: m.MemberPods(),
		HostPods: r.cfg.HostPods.Lister(), Client: r.cfg.Host, Since: since, Metrics: r.controllers})
	if err != nil {
		return err
	}
	return ec.Run(ctx, 4)
}
