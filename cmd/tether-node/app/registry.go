package app

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/tetherkube/tether/provider"
	"github.com/tetherkube/tether/provider/forge"
	"github.com/tetherkube/tether/provider/kubelet"
)

// AnnotationKubeletPort on a member Secret gives the member's virtual node a kubelet API port of its own (as
// --member-kubelet-port does).
const AnnotationKubeletPort = "tether.io/kubelet-port"

// Event reasons on member Secrets.
const (
	ReasonMemberStarted = "MemberStarted"
	ReasonMemberInvalid = "InvalidMember"
)

// sharedHost is what all virtual nodes share: the host client, caches and event recorder.
type sharedHost struct {
	client     kubernetes.Interface
	clusterID  string
	pods       corev1informers.PodInformer
	configMaps corev1informers.ConfigMapInformer
	secrets    corev1informers.SecretInformer
	services   corev1informers.ServiceInformer
	sas        corev1informers.ServiceAccountInformer
	recorder   record.EventRecorder
}

// registry runs one virtual node per member and starts and stops them as members come and go.
type registry struct {
	ctx     context.Context
	o       *Options
	host    *sharedHost
	ports   map[string]int32 // --member-kubelet-port
	kubelet *kubelet.Server
	mu      sync.Mutex
	active  map[string]*running
	wg      sync.WaitGroup
}

type running struct {
	member     *kubelet.Member
	port       int32 // of the kubelet API published on the node
	nodeName   string
	source     string // "flag" or the Secret's namespace/name
	kubeconfig []byte // for Secrets: restart only when it changes
	cancel     context.CancelFunc
	alive      *atomic.Bool
	done       chan struct{}
}

func newRegistry(ctx context.Context, o *Options, host *sharedHost, ports map[string]int32) *registry {
	return &registry{ctx: ctx, o: o, host: host, ports: ports, active: map[string]*running{}}
}

// start runs a member's virtual node in the background; port is its own kubelet API port, 0 for the shared one.
func (r *registry) start(name, source string, cfg *rest.Config, port int32) error {
	return r.startWithKubeconfig(name, source, cfg, nil, port)
}

func (r *registry) startWithKubeconfig(name, source string, cfg *rest.Config, raw []byte, port int32) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = r.o.MemberQPS, r.o.MemberBurst
	cfg.UserAgent = "tether-node"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	metrics, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if port == 0 {
		port = r.o.KubeletPort
	}
	hostLevel := forge.DefaultHostLevel()
	hostLevel.Keys = append(append([]string(nil), hostLevel.Keys...), r.o.KeepLabelKeys...)
	hostLevel.VirtualNodePrefix = r.o.NodePrefix
	m, err := provider.New(provider.Config{
		Member:           name,
		NodeName:         r.o.NodePrefix + name,
		ClusterID:        r.host.clusterID,
		HostLevel:        hostLevel,
		MemberClient:     client,
		HostClient:       r.host.client,
		HostPods:         r.host.pods.Lister(),
		HostConfigMaps:   r.host.configMaps.Lister(),
		HostSecrets:      r.host.secrets.Lister(),
		HostSAs:          r.host.sas.Lister(),
		Recorder:         r.host.recorder,
		InternalIP:       r.o.KubeletAddress,
		KubeletPort:      port,
		Resync:           r.o.Resync,
		HealthInterval:   r.o.HealthInterval,
		HealthTimeout:    r.o.HealthTimeout,
		CapacityDebounce: r.o.CapacityDebounce,
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.active[name]; ok {
		if old.source != source {
			return fmt.Errorf("member %s is already served (from %s)", name, old.source)
		}
		r.stopLocked(name)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("member", name))
	km := &kubelet.Member{Name: name, NodeName: m.NodeName(), Client: client, Config: cfg, Metrics: metrics,
		PodSelector: m.PodSelector(), OwnedPods: m.OwnedPods}
	run := &running{member: km, port: port, nodeName: m.NodeName(),
		source: source, kubeconfig: raw, cancel: cancel, alive: &atomic.Bool{}, done: make(chan struct{})}
	run.alive.Store(true)
	r.active[name] = run
	// done closes when the node and its own kubelet listener have both stopped, so that a restarted member
	// (a changed Secret) binds its port again only once the old listener has let go of it.
	var parts sync.WaitGroup
	parts.Go(func() {
		if err := r.runMember(ctx, m, run.alive); err != nil && ctx.Err() == nil {
			log.G(ctx).WithError(err).Error("virtual node stopped")
		}
	})
	if port != r.o.KubeletPort && r.kubelet != nil {
		parts.Go(func() {
			addr := net.JoinHostPort(r.o.KubeletBind, strconv.Itoa(int(port)))
			if err := r.kubelet.Serve(ctx, addr); err != nil && ctx.Err() == nil {
				log.G(ctx).WithError(err).Error("kubelet API of this member stopped")
				r.host.recorder.Eventf(m.Node(), corev1.EventTypeWarning, "KubeletPortFailed", "kubelet API on %s: %v", addr, err)
			}
		})
	}
	r.wg.Go(func() {
		parts.Wait()
		close(run.done)
	})
	log.G(ctx).WithField("node", m.NodeName()).WithField("source", source).Info("serving member")
	return nil
}

// runMember registers the virtual node, waits for the member's caches and runs the pod controller.
func (r *registry) runMember(ctx context.Context, m *provider.Member, alive *atomic.Bool) error {
	defer m.Shutdown()
	nodes := r.host.client.CoreV1().Nodes()
	nc, err := node.NewNodeController(m, m.InitialNode(ctx, 10*time.Second), nodes,
		node.WithNodeEnableLeaseV1(r.host.client.CoordinationV1().Leases(corev1.NamespaceNodeLease), r.o.LeaseDuration),
		node.WithNodeStatusUpdateInterval(r.o.NodeStatusInterval),
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
			&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(r.o.QueueQPS), r.o.QueueBurst)},
		)
	}
	nodeName := m.NodeName()
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:                            r.host.client.CoreV1(),
		PodInformer:                          r.host.pods,
		EventRecorder:                        warningsOnly{r.host.recorder},
		Provider:                             m,
		ConfigMapInformer:                    r.host.configMaps,
		SecretInformer:                       r.host.secrets,
		ServiceInformer:                      r.host.services,
		SyncPodsFromKubernetesRateLimiter:    limiter(),
		DeletePodsFromKubernetesRateLimiter:  limiter(),
		SyncPodStatusFromProviderRateLimiter: limiter(),
		PodEventFilterFunc: func(_ context.Context, p *corev1.Pod) bool {
			// The shared informer keeps calling a stopped member's handlers: alive turns them off.
			return alive.Load() && p.Spec.NodeName == nodeName
		},
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return err
	}
	errs := make(chan error, 2)
	go func() { errs <- nc.Run(ctx) }()
	go m.RunNode(ctx)
	if err := m.Start(ctx); err != nil {
		return err
	}
	go func() { errs <- pc.Run(ctx, r.o.PodWorkers) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

// NodeOf names the virtual node a host pod is bound to ("" when the pod is unknown).
func (r *registry) NodeOf(namespace, pod string) string {
	p, err := r.host.pods.Lister().Pods(namespace).Get(pod)
	if err != nil {
		return ""
	}
	return p.Spec.NodeName
}

// Pods lists the host pods bound to the virtual nodes this process serves, for the kubelet API's /pods.
func (r *registry) Pods(context.Context) ([]*corev1.Pod, error) {
	r.mu.Lock()
	nodes := map[string]bool{}
	for _, run := range r.active {
		nodes[run.nodeName] = true
	}
	r.mu.Unlock()
	all, err := r.host.pods.Lister().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		if nodes[p.Spec.NodeName] {
			out = append(out, p)
		}
	}
	return out, nil
}

// MemberOf finds the member a host pod runs in, for the kubelet API.
func (r *registry) MemberOf(namespace, pod string) (*kubelet.Member, error) {
	node := r.NodeOf(namespace, pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range r.active {
		if node != "" && run.nodeName == node {
			return run.member, nil
		}
	}
	return nil, kubelet.NotFound(namespace, pod)
}

// MembersOn are the virtual nodes whose kubelet API is published on port.
func (r *registry) MembersOn(port int32) []*kubelet.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*kubelet.Member
	for _, run := range r.active {
		if run.port == port {
			out = append(out, run.member)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeName < out[j].NodeName })
	return out
}

func (r *registry) stop(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked(name)
}

func (r *registry) stopLocked(name string) {
	run, ok := r.active[name]
	if !ok {
		return
	}
	run.alive.Store(false)
	run.cancel()
	delete(r.active, name)
	<-run.done
}

func (r *registry) stopAll() {
	r.mu.Lock()
	for name := range r.active {
		r.stopLocked(name)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// watchSecrets serves members from host Secrets labelled tether.io/member in Tether's namespace: the label's value
// (or the Secret's name) names the member, key kubeconfig holds its kubeconfig.
func (r *registry) watchSecrets(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(r.host.client, r.o.Resync,
		informers.WithNamespace(r.o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = forge.LabelMember }))
	inf := factory.Core().V1().Secrets().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.onSecret(ctx, obj) },
		UpdateFunc: func(_, obj any) { r.onSecret(ctx, obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if s, ok := obj.(*corev1.Secret); ok {
				r.onSecretDeleted(ctx, s)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	return nil
}

func memberName(s *corev1.Secret) string {
	if v := s.Labels[forge.LabelMember]; v != "" {
		return v
	}
	return s.Name
}

func (r *registry) onSecret(ctx context.Context, obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	name, source := memberName(s), "secret "+s.Namespace+"/"+s.Name
	raw := s.Data["kubeconfig"]
	fail := func(err error) {
		log.G(ctx).WithField("secret", s.Namespace+"/"+s.Name).WithError(err).Error("cannot serve member")
		r.host.recorder.Eventf(s, corev1.EventTypeWarning, ReasonMemberInvalid, "member %s: %v", name, err)
	}
	port := r.o.KubeletPort
	if v, ok := s.Annotations[AnnotationKubeletPort]; ok {
		p, err := parsePort(v)
		if err != nil {
			fail(fmt.Errorf("annotation %s: %w", AnnotationKubeletPort, err))
			return
		}
		port = p
	}
	r.mu.Lock()
	cur, ok := r.active[name]
	r.mu.Unlock()
	if ok && cur.source == source && bytes.Equal(cur.kubeconfig, raw) && cur.port == port {
		return // resync, or a change that does not concern us
	}
	if errs := validateMemberName(name); errs != nil {
		fail(errs)
		return
	}
	if len(raw) == 0 {
		fail(fmt.Errorf("secret has no key kubeconfig"))
		return
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		fail(fmt.Errorf("invalid kubeconfig: %w", err))
		return
	}
	if err := r.startWithKubeconfig(name, source, cfg, raw, port); err != nil {
		fail(err)
		return
	}
	r.host.recorder.Eventf(s, corev1.EventTypeNormal, ReasonMemberStarted, "serving member %s as node %s%s", name, r.o.NodePrefix, name)
}

func (r *registry) onSecretDeleted(ctx context.Context, s *corev1.Secret) {
	name := memberName(s)
	r.mu.Lock()
	cur, ok := r.active[name]
	if !ok || cur.source != "secret "+s.Namespace+"/"+s.Name {
		r.mu.Unlock()
		return
	}
	r.stopLocked(name)
	r.mu.Unlock()
	// The member is gone from the host: so is its virtual node (the host's pod GC then removes its pods).
	nodeName := r.o.NodePrefix + name
	if err := r.host.client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		log.G(ctx).WithError(err).WithField("node", nodeName).Error("delete virtual node of a removed member")
	}
	log.G(ctx).WithField("member", name).Info("member removed")
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
