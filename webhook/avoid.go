package webhook

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/api"
)

// AvoidRecord serves the descheduler's avoid record (api.Avoid) to Mutate from informers: one on the record's
// ConfigMap alone (a field selector on its name) and one on the virtual nodes (a label selector), so that an
// admission costs no API request.
type AvoidRecord struct {
	configMaps corelisters.ConfigMapLister
	nodes      corelisters.NodeLister
	synced     []cache.InformerSynced
	factories  []informers.SharedInformerFactory
	namespace  string
	name       string
	now        func() time.Time

	mu sync.Mutex
	// rv and parsed cache the decoded record by resourceVersion.
	rv     string
	parsed api.Avoid
}

// NewAvoidRecord reads the record from ConfigMap namespace/name.
func NewAvoidRecord(client kubernetes.Interface, namespace, name string) *AvoidRecord {
	cms := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector(metav1.ObjectNameField, name).String()
		}))
	nodes := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{api.NodeTypeKey: api.NodeType}.String() + "," + api.LabelMember
		}))
	cmInformer, nodeInformer := cms.Core().V1().ConfigMaps(), nodes.Core().V1().Nodes()
	r := &AvoidRecord{
		configMaps: cmInformer.Lister(), nodes: nodeInformer.Lister(),
		synced:    []cache.InformerSynced{cmInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced},
		factories: []informers.SharedInformerFactory{cms, nodes},
		namespace: namespace, name: name, now: time.Now,
	}
	return r
}

// Start runs the informers until ctx ends. Until they have synced, Members avoids nothing.
func (r *AvoidRecord) Start(ctx context.Context) {
	for _, f := range r.factories {
		f.Start(ctx.Done())
	}
}

// HasSynced reports whether both informers have synced.
func (r *AvoidRecord) HasSynced() bool {
	for _, s := range r.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Members are the members that pod (a new pod of some controller) must avoid: the unexpired members of its
// controller's entry, unless that would leave it no virtual node at all.
func (r *AvoidRecord) Members(pod *corev1.Pod) []string {
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return nil
	}
	if !r.HasSynced() {
		return nil
	}
	rec := r.record()
	if rec == nil {
		return nil
	}
	avoid := rec.Members(string(owner.UID), r.now())
	if len(avoid) == 0 {
		return nil
	}
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return nil
	}
	for _, n := range nodes {
		if m := n.Labels[api.LabelMember]; m != "" && !slices.Contains(avoid, m) {
			return avoid
		}
	}
	// Every member known is avoided: avoiding none is better than a pod no node can take.
	return nil
}

func (r *AvoidRecord) record() api.Avoid {
	cm, err := r.configMaps.ConfigMaps(r.namespace).Get(r.name)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cm.ResourceVersion != r.rv || r.parsed == nil {
		rec, err := api.ParseAvoid(cm.Data)
		if err != nil {
			log.L.WithError(err).Warn("avoid record: entries ignored")
		}
		r.rv, r.parsed = cm.ResourceVersion, rec
	}
	return r.parsed
}
