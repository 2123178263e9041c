// Package provider is one member cluster seen as a virtual node of the host: the virtual-kubelet pod lifecycle
// handler (pods down, status up), the node's status and capacity, and the member connection state behind both.
// Everything reads informer caches; the only API calls are the writes a change needs.
package provider

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers/copies"
	"github.com/tetherkube/tether/provider/forge"
)

// Config is what one member's virtual node needs.
type Config struct {
	// Member names the member cluster; NodeName the virtual node (tether-<member> by default).
	Member   string
	NodeName string
	// ClusterID names the host cluster in every ownership label.
	ClusterID string
	HostLevel api.HostLevel

	MemberClient kubernetes.Interface
	HostClient   kubernetes.Interface
	// Host listers, shared by all members.
	HostPods       corev1listers.PodLister
	HostConfigMaps corev1listers.ConfigMapLister
	HostSecrets    corev1listers.SecretLister
	HostSAs        corev1listers.ServiceAccountLister
	// HostClaims, HostVolumes and HostClasses serve the pods' PersistentVolumeClaims (nil HostClaims: a pod
	// with a claim waits, with an event).
	HostClaims  corev1listers.PersistentVolumeClaimLister
	HostVolumes corev1listers.PersistentVolumeLister
	HostClasses storagelisters.StorageClassLister
	// Recorder writes events on host objects.
	Recorder record.EventRecorder

	// InternalIP and KubeletPort are where the host apiserver reaches Tether's kubelet API for this node.
	InternalIP  string
	KubeletPort int32
	// Resync is the informers' periodic resync: the level-triggered safety net.
	Resync time.Duration
	// HealthInterval and HealthTimeout pace the member health probe.
	HealthInterval, HealthTimeout time.Duration
	// Probe checks the member's health; nil: GET /readyz on its apiserver.
	Probe func(context.Context) error
	// ServerVersion reads the member's Kubernetes version (the virtual node's VERSION); nil: its apiserver's
	// gitVersion.
	ServerVersion func(context.Context) (string, error)
	// DeniedNamespaces are member namespaces Tether never uses: a pod headed there stays Pending with an event.
	DeniedNamespaces []string
	// OffloadDaemonSetPods lets DaemonSet pods bound to the virtual node (a DaemonSet that tolerates every taint)
	// run in the member; by default they wait with an event, as they would on a node they do not fit.
	OffloadDaemonSetPods bool
	// RequestTimeout bounds each request of the pod path to the member apiserver (0: none).
	RequestTimeout time.Duration
	// StatusDelay observes, per status write, the time from the member pod event that asked for it to the end of
	// the write; nil: not measured.
	StatusDelay prometheus.Observer
	// CreateDelay observes, per member pod created, the time from the host pod's binding to the end of the
	// create; nil: not measured.
	CreateDelay prometheus.Observer
	// OnSyncError is told every error of the repair pass (which retries it); nil: nothing.
	OnSyncError func(error)
	// CapacityDebounce is the least time between two capacity recomputations.
	CapacityDebounce time.Duration
}

// Member is the virtual node of one member cluster. It implements virtual-kubelet's PodLifecycleHandler,
// PodNotifier and NodeProvider.
type Member struct {
	cfg   Config
	owner api.Owner

	factory    informers.SharedInformerFactory // whole member: pods and nodes (capacity), namespaces
	ownFactory informers.SharedInformerFactory // member objects this host owns: configmaps, SAs, claims, services
	pods       corev1listers.PodLister
	nodes      corev1listers.NodeLister
	namespaces corev1listers.NamespaceLister
	configMaps corev1listers.ConfigMapLister
	sas        corev1listers.ServiceAccountLister
	claims     corev1listers.PersistentVolumeClaimLister
	synced     []cache.InformerSynced
	// secretCopies writes the Secret copies, which this node may not read in the member.
	secretCopies *copies.SecretCopies

	mu         sync.Mutex
	notifyPod  func(*corev1.Pod)
	notifyNode func(*corev1.Node)
	initial    *corev1.Node // what InitialNode registered

	// ctx is Start's: the lifetime of work that informer handlers start.
	ctx       context.Context
	startOnce sync.Once

	recompute chan struct{}
	// repairQueue feeds the repair pass (repair.go); deleted holds the UIDs of member pods deleted lately, which
	// the pass leaves to the caches to catch up with.
	repairQueue workqueue.TypedRateLimitingInterface[string]
	deleted     sync.Map // types.UID → time.Time
	// pushed holds, per host pod UID, when the oldest status not yet written was pushed (for StatusDelay).
	pushed    sync.Map // types.UID → time.Time
	reachable atomic.Bool
	health    atomic.Pointer[string] // last probe error, nil when healthy
	version   atomic.Pointer[string] // the member's Kubernetes version, nil until read
	// beforeFirstPod is SetBeforeFirstPod's; seenNamespaces the namespaces it succeeded for.
	beforeFirstPod atomic.Pointer[func(context.Context, string) error]
	seenNamespaces sync.Map // namespace → struct{}
}

// New builds a member's virtual node; Run starts it.
func New(cfg Config) (*Member, error) {
	if cfg.Member == "" || cfg.NodeName == "" || cfg.ClusterID == "" {
		return nil, errors.New("member, node name and cluster id must be set")
	}
	if cfg.MemberClient == nil || cfg.HostClient == nil || cfg.HostPods == nil || cfg.Recorder == nil {
		return nil, errors.New("member and host clients, host pod lister and event recorder must be set")
	}
	if cfg.Probe == nil {
		cfg.Probe = func(ctx context.Context) error {
			_, err := cfg.MemberClient.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		}
	}
	if cfg.ServerVersion == nil {
		cfg.ServerVersion = func(context.Context) (string, error) {
			v, err := cfg.MemberClient.Discovery().ServerVersion()
			if err != nil {
				return "", err
			}
			return v.GitVersion, nil
		}
	}
	owner := api.Owner{ClusterID: cfg.ClusterID, NodeName: cfg.NodeName}
	m := &Member{
		cfg:       cfg,
		owner:     owner,
		factory:   informers.NewSharedInformerFactoryWithOptions(cfg.MemberClient, cfg.Resync, informers.WithTransform(trimMemberCache)),
		recompute: make(chan struct{}, 1),
		ownFactory: informers.NewSharedInformerFactoryWithOptions(cfg.MemberClient, cfg.Resync, informers.WithTransform(TrimForCache),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = owner.Selector() })),
	}
	m.repairQueue = m.newRepairQueue()
	pods := m.factory.Core().V1().Pods()
	nodes := m.factory.Core().V1().Nodes()
	namespaces := m.factory.Core().V1().Namespaces()
	cms := m.ownFactory.Core().V1().ConfigMaps()
	sas := m.ownFactory.Core().V1().ServiceAccounts()
	m.pods, m.nodes, m.namespaces = pods.Lister(), nodes.Lister(), namespaces.Lister()
	claims := m.ownFactory.Core().V1().PersistentVolumeClaims()
	m.configMaps, m.sas, m.claims = cms.Lister(), sas.Lister(), claims.Lister()
	m.secretCopies = copies.NewSecretCopies(cfg.MemberClient, owner, m.configMaps, cfg.Resync)
	// The copies of Services and their EndpointSlices (controllers/services).
	services := m.ownFactory.Core().V1().Services().Informer()
	slices := m.ownFactory.Discovery().V1().EndpointSlices().Informer()
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), nodes.Informer(), namespaces.Informer(), cms.Informer(), sas.Informer(), claims.Informer(), services, slices} {
		m.synced = append(m.synced, inf.HasSynced)
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.onMemberPod(nil, obj) },
		UpdateFunc: func(old, obj any) { m.onMemberPod(old, obj) },
		DeleteFunc: m.onMemberPodDeleted,
	}); err != nil {
		return nil, err
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.triggerRecompute() },
		UpdateFunc: func(old, obj any) { m.onMemberNode(old, obj) },
		DeleteFunc: func(any) { m.triggerRecompute() },
	}); err != nil {
		return nil, err
	}
	return m, nil
}

// NodeName is the virtual node's name.
func (m *Member) NodeName() string { return m.cfg.NodeName }

// Start starts the member informers and waits until they have synced or ctx ends. An unreachable member keeps it
// waiting; the node says so meanwhile (see RunNode).
func (m *Member) Start(ctx context.Context) error {
	m.startInformers(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), m.synced...) {
		return fmt.Errorf("member %s: caches did not sync: %w", m.cfg.Member, ctx.Err())
	}
	log.G(ctx).WithField("member", m.cfg.Member).Info("member caches synced")
	m.triggerRecompute()
	return nil
}

func (m *Member) startInformers(ctx context.Context) {
	m.startOnce.Do(func() {
		m.ctx = log.WithLogger(ctx, log.G(ctx).WithField("member", m.cfg.Member))
		m.factory.Start(ctx.Done())
		m.ownFactory.Start(ctx.Done())
	})
}

// InitialNode is the node to register or refresh at start. It probes the member and gives its caches up to wait
// to sync first, so that a restart of tether-node publishes the member's real state rather than a moment of
// "not known yet" (which would turn the node NotReady for a breath).
func (m *Member) InitialNode(ctx context.Context, wait time.Duration) *corev1.Node {
	m.startInformers(ctx)
	m.probe(ctx)
	syncCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	cache.WaitForCacheSync(syncCtx.Done(), m.synced...)
	n := m.currentNode()
	// Carry over the transition times the node already shows, so that a restart is not a transition.
	if have, err := m.cfg.HostClient.CoreV1().Nodes().Get(ctx, m.cfg.NodeName, metav1.GetOptions{}); err == nil {
		keepTransitionTimes(have, n)
	}
	m.mu.Lock()
	m.initial = n
	m.mu.Unlock()
	return n
}

// Shutdown waits for the informers to stop after ctx ended.
func (m *Member) Shutdown() {
	m.factory.Shutdown()
	m.ownFactory.Shutdown()
}

func (m *Member) triggerRecompute() {
	select {
	case m.recompute <- struct{}{}:
	default:
	}
}

func (m *Member) onMemberNode(old, obj any) {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := obj.(*corev1.Node)
	// Heartbeats change nothing the virtual node shows: only usability and allocatable matter.
	if ok1 && ok2 && forge.UsableNode(o) == forge.UsableNode(n) && equalResources(o.Status.Allocatable, n.Status.Allocatable) {
		return
	}
	m.triggerRecompute()
}

// Reachable reports whether the last health probe of the member succeeded.
func (m *Member) Reachable() bool { return m.reachable.Load() }

// HasCopyOf reports whether the member pod named like host is this node's copy of that very host pod: owned by
// this host and node, and annotated with its UID.
func (m *Member) HasCopyOf(host *corev1.Pod) bool {
	p, err := m.pods.Pods(host.Namespace).Get(host.Name)
	return err == nil && m.owner.Owns(p) && p.Annotations[api.AnnotationHostUID] == string(host.UID)
}

// PodSelector selects this node's pods in the member.
func (m *Member) PodSelector() string { return m.owner.Selector() }

// OwnedPods lists this node's member pods from the cache.
func (m *Member) OwnedPods() ([]*corev1.Pod, error) {
	sel, err := labels.Parse(m.owner.Selector())
	if err != nil {
		return nil, err
	}
	return m.pods.List(sel)
}

func equalResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}

// withRequestTimeout bounds the member requests made under ctx by RequestTimeout.
func (m *Member) withRequestTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if m.cfg.RequestTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, m.cfg.RequestTimeout)
}

// Owner is this node's ownership of member objects.
func (m *Member) Owner() api.Owner { return m.owner }

// CopyInformers are the member informers of the ConfigMap and ServiceAccount copies this node owns, for the copy
// controller (they start with the member's other informers).
func (m *Member) CopyInformers() (configMaps, serviceAccounts cache.SharedIndexInformer) {
	core := m.ownFactory.Core().V1()
	return core.ConfigMaps().Informer(), core.ServiceAccounts().Informer()
}

// SecretCopies writes and tracks the Secret copies of this node (shared by the pod path and the copy controller).
func (m *Member) SecretCopies() *copies.SecretCopies { return m.secretCopies }

// ClaimInformer is the member informer of the PersistentVolumeClaim copies this node owns.
func (m *Member) ClaimInformer() cache.SharedIndexInformer {
	return m.ownFactory.Core().V1().PersistentVolumeClaims().Informer()
}

// EnsureNamespace creates the member namespace ns, labelled as Tether's, unless it exists.
func (m *Member) EnsureNamespace(ctx context.Context, ns string) error {
	return m.ensureNamespace(ctx, ns)
}

// MemberPods lists the member's pods (trimmed: metadata, status and what requests are made of).
func (m *Member) MemberPods() corev1listers.PodLister { return m.pods }

// ServiceInformers are the member informers of the Service and EndpointSlice copies this node owns.
func (m *Member) ServiceInformers() (services, slices cache.SharedIndexInformer) {
	return m.ownFactory.Core().V1().Services().Informer(), m.ownFactory.Discovery().V1().EndpointSlices().Informer()
}

// SetBeforeFirstPod sets what CreatePod runs before it creates a member pod in a namespace (the Service copies,
// so that the pod's service environment variables exist); nil: nothing.
func (m *Member) SetBeforeFirstPod(f func(ctx context.Context, namespace string) error) {
	m.beforeFirstPod.Store(&f)
}

// MemberNamespaces lists the member's namespaces.
func (m *Member) MemberNamespaces() corev1listers.NamespaceLister { return m.namespaces }
