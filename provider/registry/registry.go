// Package registry runs one virtual node per member cluster in one process, and starts, stops and restarts them as
// members come and go: from flags, and at runtime from labelled Secrets in Tether's host namespace. A member whose
// start fails is retried with backoff and reported; the kubelet API routes only to members that run.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/provider/kubelet"
)

// Event reasons on member Secrets.
const (
	ReasonMemberStarted     = "MemberStarted"
	ReasonMemberInvalid     = "InvalidMember"
	ReasonMemberStartFailed = "MemberStartFailed"
	ReasonMemberNotSynced   = "MemberNotSynced"
	ReasonMemberConflict    = "MemberConflict"
)

// Config is what the registry needs: the host (shared by every virtual node) and the settings of each node.
type Config struct {
	// Host is the host client; ClusterID names the host in ownership labels.
	Host      kubernetes.Interface
	ClusterID string
	// Host informers shared by every virtual node. HostPods holds pods bound to some node.
	HostPods            corev1informers.PodInformer
	HostConfigMaps      corev1informers.ConfigMapInformer
	HostSecrets         corev1informers.SecretInformer
	HostServices        corev1informers.ServiceInformer
	HostServiceAccounts corev1informers.ServiceAccountInformer
	HostEndpointSlices  discoveryinformers.EndpointSliceInformer
	// HostClaims are every PersistentVolumeClaim, HostVolumes the PersistentVolumes Tether provisioned for this
	// host cluster, HostClasses the StorageClasses (controllers/volumes). Nil HostClaims: no claims served.
	HostClaims  corev1informers.PersistentVolumeClaimInformer
	HostVolumes corev1informers.PersistentVolumeInformer
	HostClasses storageinformers.StorageClassInformer
	// Recorder writes events on host objects (pods, nodes, member Secrets).
	Recorder record.EventRecorder
	// Kubelet serves the kubelet API on a member's own port (Member.Port); nil when no member has one.
	Kubelet Listener
	// Metrics registers the registry's metrics; nil: none.
	Metrics prometheus.Registerer
	// NewClients builds a member's clients from its rest config; nil: real clients.
	NewClients func(*rest.Config) (Clients, error)

	// Members are the members from flags.
	Members []Member
	// MemberSecrets serves members from Secrets labelled api.LabelMember in Namespace.
	MemberSecrets bool
	Namespace     string

	Node NodeSettings
	// StartTimeout is how long a member may take to sync its caches before it is reported (it keeps trying).
	StartTimeout time.Duration
	// RetryBase and RetryMax bound the backoff between two starts of a failed member.
	RetryBase, RetryMax time.Duration
	// Resync is the member Secrets' resync period: the periodic full reconcile of members.
	Resync time.Duration
}

// NodeSettings shape every virtual node.
type NodeSettings struct {
	NodePrefix     string
	KeepLabelKeys  []string
	KubeletAddress string
	// KubeletPort is the shared kubelet API port; KubeletBind the address a member's own port listens on.
	KubeletPort int32
	KubeletBind string

	MemberQPS   float32
	MemberBurst int
	QueueQPS    float64
	QueueBurst  int
	PodWorkers  int

	// RepairInterval paces the repair pass, which puts right what the pod controller's queues gave up on.
	RepairInterval time.Duration
	// PodSyncRetries is how often the pod controller's queues retry one pod before they leave it to the repair
	// pass (virtual-kubelet's own limit is 20).
	PodSyncRetries int
	// CopyGrace is how long a member copy (ConfigMap, Secret, ServiceAccount, Service) or a member namespace of
	// Tether's that nothing uses any more stays.
	CopyGrace time.Duration
	// MemberRequestTimeout bounds each request of the pod path to a member apiserver (0: none), so that a member
	// that hangs fails the request and the work is retried instead of holding a worker.
	MemberRequestTimeout time.Duration
	// DeniedNamespaces are member namespaces never used (kube-system, …).
	DeniedNamespaces []string
	// OffloadDaemonSetPods runs DaemonSet pods bound to virtual nodes in members.
	OffloadDaemonSetPods bool

	Resync             time.Duration
	HealthInterval     time.Duration
	HealthTimeout      time.Duration
	CapacityDebounce   time.Duration
	NodeStatusInterval time.Duration
	LeaseDuration      int32
}

// Member is one member to serve.
type Member struct {
	Name   string
	Config *rest.Config
	// Port is the member's own kubelet API port; 0: the shared one.
	Port int32
}

// Clients are a member's clients.
type Clients struct {
	Kube    kubernetes.Interface
	Metrics metricsclient.Interface
	// Probe checks the member's health; nil: GET /readyz.
	Probe func(context.Context) error
}

// Listener serves the kubelet API on one address until ctx ends.
type Listener interface {
	Serve(ctx context.Context, addr string) error
}

// Registry runs the members' virtual nodes. It is the kubelet API's router.
type Registry struct {
	cfg     Config
	metrics *metrics
	// controllers are the metrics of every member's controllers.
	controllers *controllers.Metrics
	queue       workqueue.TypedRateLimitingInterface[string]
	secrets     corev1listers.SecretLister

	mu      sync.Mutex
	members map[string]*running // by member name
}

// New checks cfg and builds a registry; Run serves it.
func New(cfg Config) (*Registry, error) {
	var errs []error
	if cfg.Host == nil || cfg.HostPods == nil || cfg.HostConfigMaps == nil || cfg.HostSecrets == nil ||
		cfg.HostServices == nil || cfg.HostServiceAccounts == nil || cfg.HostEndpointSlices == nil || cfg.Recorder == nil {
		errs = append(errs, errors.New("host client, host informers and event recorder must be set"))
	}
	if cfg.ClusterID == "" {
		errs = append(errs, errors.New("cluster id must be set"))
	}
	if cfg.MemberSecrets && cfg.Namespace == "" {
		errs = append(errs, errors.New("member Secrets need a namespace"))
	}
	seen := map[string]bool{}
	for _, m := range cfg.Members {
		if err := ValidateMemberName(m.Name, cfg.Node.NodePrefix); err != nil {
			errs = append(errs, err)
		}
		if seen[m.Name] {
			errs = append(errs, fmt.Errorf("member %s given twice", m.Name))
		}
		seen[m.Name] = true
		if m.Config == nil {
			errs = append(errs, fmt.Errorf("member %s: no rest config", m.Name))
		}
		if m.Port != 0 && cfg.Kubelet == nil {
			errs = append(errs, fmt.Errorf("member %s: a kubelet port of its own needs a kubelet listener", m.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.NewClients == nil {
		cfg.NewClients = realClients
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = time.Minute
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = max(cfg.RetryBase, 2*time.Minute)
	}
	cm, err := controllers.NewMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		cfg:         cfg,
		metrics:     newMetrics(),
		controllers: cm,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "tether-member-secrets"}),
		members: map[string]*running{},
	}
	// Once per registry: members that start, stop and restart use labelled children of these.
	if cfg.Metrics != nil {
		if err := r.metrics.register(cfg.Metrics, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func realClients(cfg *rest.Config) (Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Clients{}, err
	}
	m, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return Clients{}, err
	}
	return Clients{Kube: kube, Metrics: m}, nil
}

// Run serves the members from flags and, with MemberSecrets, from Secrets, until ctx ends; then it stops every
// member and returns once all of them have stopped. The host informers must have synced.
func (r *Registry) Run(ctx context.Context) error {
	defer r.stopAll()
	defer r.queue.ShutDown()
	for _, m := range r.cfg.Members {
		r.start(ctx, spec{Member: m, source: sourceFlag})
	}
	if !r.cfg.MemberSecrets {
		<-ctx.Done()
		return nil
	}
	factory := informers.NewSharedInformerFactoryWithOptions(r.cfg.Host, r.cfg.Resync,
		informers.WithNamespace(r.cfg.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = api.MemberSelector }))
	inf := factory.Core().V1().Secrets()
	r.secrets = inf.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil // ctx ended
	}
	var workers sync.WaitGroup
	workers.Go(func() {
		for r.processNext(ctx) {
		}
	})
	<-ctx.Done()
	r.queue.ShutDown()
	workers.Wait()
	return nil
}

func (r *Registry) processNext(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	if err := r.syncSecret(ctx, key); err != nil {
		log.G(ctx).WithField("secret", key).WithError(err).Error("sync member Secret")
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

// syncSecret brings the member of one Secret in line with it: started, restarted when its kubeconfig or port
// changed, stopped (and its virtual node deleted) when the Secret is gone or names another member now.
func (r *Registry) syncSecret(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not ours to retry
	}
	source := sourceSecret(key)
	s, err := r.secrets.Secrets(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		for _, member := range r.membersFrom(source) {
			r.remove(ctx, member)
		}
		return nil
	}
	if err != nil {
		return err
	}
	want, err := specFromSecret(s, r.cfg.Node.NodePrefix, r.cfg.Node.KubeletPort, r.cfg.Kubelet != nil)
	member := api.MemberOfSecret(s)
	// A Secret that names another member now: the old one goes.
	for _, old := range r.membersFrom(source) {
		if old != member {
			r.remove(ctx, old)
		}
	}
	if err != nil {
		// What runs keeps running on what was valid: a bad edit loses nothing.
		r.metrics.invalid.WithLabelValues(member).Inc()
		log.G(ctx).WithField("secret", key).WithError(err).Error("cannot serve member")
		r.cfg.Recorder.Eventf(s, corev1.EventTypeWarning, ReasonMemberInvalid, "member %s: %v", member, err)
		return nil
	}
	r.mu.Lock()
	cur, ok := r.members[member]
	r.mu.Unlock()
	switch {
	case ok && cur.spec.source != source:
		msg := fmt.Sprintf("member %s is already served from %s", member, cur.spec.source)
		r.cfg.Recorder.Event(s, corev1.EventTypeWarning, ReasonMemberConflict, msg)
		log.G(ctx).WithField("secret", key).Warn(msg)
		return nil
	case ok && cur.spec.equal(want):
		return nil // a resync, or a change that does not concern the member
	case ok:
		r.stop(member)
	}
	r.start(ctx, want)
	r.cfg.Recorder.Eventf(s, corev1.EventTypeNormal, ReasonMemberStarted, "serving member %s as node %s", member,
		api.NodeName(r.cfg.Node.NodePrefix, member))
	return nil
}

func (r *Registry) membersFrom(source string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for name, m := range r.members {
		if m.spec.source == source {
			out = append(out, name)
		}
	}
	return out
}

// deleteNode removes the virtual node of a member that left the host; the host's pod GC then removes its pods.
func (r *Registry) deleteNode(ctx context.Context, member string) {
	node := api.NodeName(r.cfg.Node.NodePrefix, member)
	if err := r.cfg.Host.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		log.G(ctx).WithError(err).WithField("node", node).Error("delete virtual node of a removed member")
		return
	}
	log.G(ctx).WithField("member", member).Info("member removed")
}

// remove stops a member that left the host, cleans up what Tether created in it, and deletes its virtual node.
func (r *Registry) remove(ctx context.Context, member string) {
	r.mu.Lock()
	run, ok := r.members[member]
	r.mu.Unlock()
	if !ok {
		return
	}
	r.stop(member)
	r.cleanup(ctx, run.spec)
	r.deleteNode(ctx, member)
}

// start runs a member in the background. The caller has made sure no member of that name runs.
func (r *Registry) start(ctx context.Context, s spec) {
	ctx, cancel := context.WithCancel(ctx)
	run := &running{spec: s, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.members[s.Name] = run
	r.mu.Unlock()
	r.metrics.members.Inc()
	go func() {
		defer close(run.done)
		defer r.metrics.members.Dec()
		r.supervise(ctx, run)
	}()
}

// stop stops a member and waits until every goroutine it started is gone, without holding the lock meanwhile.
func (r *Registry) stop(name string) {
	r.mu.Lock()
	run, ok := r.members[name]
	delete(r.members, name)
	r.mu.Unlock()
	if !ok {
		return
	}
	run.cancel()
	<-run.done
}

func (r *Registry) stopAll() {
	r.mu.Lock()
	names := make([]string, 0, len(r.members))
	for name := range r.members {
		names = append(names, name)
	}
	r.mu.Unlock()
	for _, name := range names {
		r.stop(name)
	}
}

// NodeOf names the virtual node a host pod is bound to ("" when the pod is unknown).
func (r *Registry) NodeOf(namespace, pod string) string {
	p, err := r.cfg.HostPods.Lister().Pods(namespace).Get(pod)
	if err != nil {
		return ""
	}
	return p.Spec.NodeName
}

// Pods lists the host pods bound to the virtual nodes that run, for the kubelet API's /pods.
func (r *Registry) Pods(context.Context) ([]*corev1.Pod, error) {
	nodes := map[string]bool{}
	for _, m := range r.serving() {
		nodes[m.NodeName] = true
	}
	all, err := r.cfg.HostPods.Lister().List(labels.Everything())
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

// MemberOf finds the member a host pod runs in, for the kubelet API: only members that run are routed to, and only
// when the member pod of that name is Tether's copy of this host pod.
func (r *Registry) MemberOf(namespace, pod string) (*kubelet.Member, error) {
	host, err := r.cfg.HostPods.Lister().Pods(namespace).Get(pod)
	if err != nil || host.Spec.NodeName == "" {
		return nil, kubelet.NotFound(namespace, pod)
	}
	for _, m := range r.serving() {
		if m.NodeName != host.Spec.NodeName {
			continue
		}
		if m.HasCopyOf == nil || !m.HasCopyOf(host) {
			return nil, kubelet.NoCopy(namespace, pod, m.Name)
		}
		return m, nil
	}
	return nil, kubelet.NotFound(namespace, pod)
}

// MembersOn are the running virtual nodes whose kubelet API is published on port.
func (r *Registry) MembersOn(port int32) []*kubelet.Member {
	var out []*kubelet.Member
	r.mu.Lock()
	for _, run := range r.members {
		if m := run.serving.Load(); m != nil && run.spec.port(r.cfg.Node.KubeletPort) == port {
			out = append(out, m)
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].NodeName < out[j].NodeName })
	return out
}

// serving lists the members that run now.
func (r *Registry) serving() []*kubelet.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*kubelet.Member, 0, len(r.members))
	for _, run := range r.members {
		if m := run.serving.Load(); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// Serving reports whether member runs and is routed to (for tests and status).
func (r *Registry) Serving(member string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	run, ok := r.members[member]
	return ok && run.serving.Load() != nil
}

// kubeletAddr is where a member's own kubelet API listens.
func (r *Registry) kubeletAddr(port int32) string {
	return net.JoinHostPort(r.cfg.Node.KubeletBind, strconv.Itoa(int(port)))
}

// ListenerFunc is a Listener of one function.
type ListenerFunc func(ctx context.Context, addr string) error

// Serve calls f.
func (f ListenerFunc) Serve(ctx context.Context, addr string) error { return f(ctx, addr) }
