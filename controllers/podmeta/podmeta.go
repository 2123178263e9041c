// Package podmeta brings label and annotation changes of host pods down to their member pods: `kubectl label pod`
// on the host reaches the pod that runs in the member, where the member's own Services, NetworkPolicies and
// controllers select by labels.
package podmeta

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/provider/forge"
)

// Name is the controller's name in logs and metrics.
const Name = "podmeta"

// Config is what the controller of one member needs.
type Config struct {
	Member string
	Owner  api.Owner
	// Client writes to the member.
	Client kubernetes.Interface
	// HostPods is the shared host pod informer (handlers added in Run, removed when it returns); MemberPods the
	// member's pod lister.
	HostPods   cache.SharedIndexInformer
	MemberPods corev1listers.PodLister
	Metrics    *controllers.Metrics
}

// Controller is the pod metadata controller of one member.
type Controller struct {
	cfg      Config
	r        *controllers.Reconciler
	hostPods corev1listers.PodLister
	// dropped holds, per host pod UID, annotation keys the host pod lost (seen on its updates) and changed the
	// time of the first change not yet applied.
	mu      sync.Mutex
	dropped map[types.UID][]string
	changed map[types.UID]time.Time
}

// New builds the controller; Run runs it.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.HostPods == nil || cfg.MemberPods == nil {
		return nil, errors.New("podmeta: client, host pod informer and member pod lister must be set")
	}
	c := &Controller{cfg: cfg, hostPods: corev1listers.NewPodLister(cfg.HostPods.GetIndexer()),
		dropped: map[types.UID][]string{}, changed: map[types.UID]time.Time{}}
	c.r = controllers.New(c.sync, controllers.Options{Name: Name, Member: cfg.Member, Metrics: cfg.Metrics})
	return c, nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	reg, err := c.cfg.HostPods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: c.hostPodUpdated,
		DeleteFunc: c.hostPodDeleted,
	})
	if err != nil {
		return err
	}
	defer func() { _ = c.cfg.HostPods.RemoveEventHandler(reg) }()
	c.r.Run(ctx, workers)
	return nil
}

func (c *Controller) hostPodUpdated(old, obj any) {
	o, ok1 := old.(*corev1.Pod)
	p, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 || p.Spec.NodeName != c.cfg.Owner.NodeName || o.UID != p.UID ||
		maps.Equal(o.Labels, p.Labels) && maps.Equal(o.Annotations, p.Annotations) {
		return
	}
	c.mu.Lock()
	for k := range o.Annotations {
		if _, ok := p.Annotations[k]; !ok && !slices.Contains(c.dropped[p.UID], k) {
			c.dropped[p.UID] = append(c.dropped[p.UID], k)
		}
	}
	if _, ok := c.changed[p.UID]; !ok {
		c.changed[p.UID] = time.Now()
	}
	c.mu.Unlock()
	c.r.Enqueue(p.Namespace + "/" + p.Name)
}

func (c *Controller) hostPodDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if p, ok := obj.(*corev1.Pod); ok {
		c.mu.Lock()
		delete(c.dropped, p.UID)
		delete(c.changed, p.UID)
		c.mu.Unlock()
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	host, err := c.hostPods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	member, err := c.cfg.MemberPods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // not created yet: it will be created with the labels of now
	}
	if err != nil {
		return err
	}
	if host.Spec.NodeName != c.cfg.Owner.NodeName || !c.cfg.Owner.Owns(member) ||
		member.Annotations[api.AnnotationHostUID] != string(host.UID) || member.DeletionTimestamp != nil {
		return nil // not the copy of this host pod: nothing of it to touch
	}
	c.mu.Lock()
	dropped := slices.Clone(c.dropped[host.UID])
	changed := c.changed[host.UID]
	c.mu.Unlock()
	labels, annotations := forge.PodMeta(host, c.cfg.Owner)
	if patch := forge.PodMetaPatch(member, labels, annotations, dropped); patch != nil {
		_, err := c.cfg.Client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("patch member pod %s metadata: %w", key, err)
		}
	}
	c.mu.Lock()
	if c.changed[host.UID].Equal(changed) {
		delete(c.changed, host.UID)
		delete(c.dropped, host.UID)
	}
	c.mu.Unlock()
	c.cfg.Metrics.ObserveLag(Name, c.cfg.Member, changed)
	return nil
}
