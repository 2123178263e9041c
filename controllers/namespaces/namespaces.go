// Package namespaces removes the member namespaces Tether created once nothing is left in them: no Tether pod of
// this member has run there for the grace period, and the namespace holds nothing but what every namespace has
// (the copies go first, through their own controllers). A namespace Tether did not create is never deleted, nor one
// where anything of someone else's lives.
package namespaces

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
)

// Name is the controller's name in logs and metrics.
const Name = "namespaces"

// Config is what the controller of one member needs.
type Config struct {
	Member string
	Owner  api.Owner
	Client kubernetes.Interface
	// HostPods is the shared host pod informer (handlers added in Run, removed when it returns).
	HostPods cache.SharedIndexInformer
	// Namespaces and Pods list the member's namespaces and pods (caches).
	Namespaces corev1listers.NamespaceLister
	Pods       corev1listers.PodLister
	// Grace is how long a namespace stays after this member's last Tether pod there.
	Grace   time.Duration
	Resync  time.Duration
	Metrics *controllers.Metrics
}

// Controller is the namespace controller of one member.
type Controller struct {
	cfg      Config
	r        *controllers.Reconciler
	hostPods corev1listers.PodLister

	mu        sync.Mutex
	idleSince map[string]time.Time
	started   time.Time
}

// New builds the controller; Run runs it and must be called.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.HostPods == nil || cfg.Namespaces == nil || cfg.Pods == nil {
		return nil, errors.New("namespaces: client, informers and listers must be set")
	}
	c := &Controller{cfg: cfg, hostPods: corev1listers.NewPodLister(cfg.HostPods.GetIndexer()),
		idleSince: map[string]time.Time{}, started: time.Now()}
	c.r = controllers.New(c.sync, controllers.Options{Name: Name, Member: cfg.Member, Keys: c.keys, Resync: cfg.Resync, Metrics: cfg.Metrics})
	return c, nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	reg, err := c.cfg.HostPods.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName == c.cfg.Owner.NodeName {
			c.r.Enqueue(p.Namespace)
		}
	}})
	if err != nil {
		return err
	}
	defer func() { _ = c.cfg.HostPods.RemoveEventHandler(reg) }()
	for _, k := range c.keys() {
		c.r.Enqueue(k)
	}
	c.r.Run(ctx, workers)
	return nil
}

// keys are the member namespaces Tether created for this host.
func (c *Controller) keys() []string {
	nss, err := c.cfg.Namespaces.List(labels.SelectorFromSet(labels.Set{api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: c.cfg.Owner.ClusterID}))
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(nss))
	for _, ns := range nss {
		out = append(out, ns.Name)
	}
	return out
}

func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.cfg.Namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(name)
		return nil
	}
	if err != nil {
		return err
	}
	if !c.cfg.Owner.OwnsForCluster(ns) || ns.DeletionTimestamp != nil {
		return nil
	}
	if busy, err := c.hostBusy(name); err != nil || busy {
		c.forget(name)
		return err
	}
	if left := c.cfg.Grace - c.idleFor(name); left > 0 {
		c.r.EnqueueAfter(name, left)
		return nil
	}
	if pods, err := c.cfg.Pods.Pods(name).List(labels.Everything()); err != nil || len(pods) > 0 {
		// Pods still stopping (ours) or someone else's: look again later.
		c.r.EnqueueAfter(name, c.cfg.Grace)
		return err
	}
	ours, others, err := c.contents(ctx, name)
	switch {
	case err != nil:
		return err
	case others:
		return nil // someone else's objects live here: never deleted (the periodic pass looks again)
	case ours:
		c.r.EnqueueAfter(name, c.cfg.Grace) // copies still being collected
		return nil
	}
	err = c.cfg.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(ns.UID))})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete member namespace %s: %w", name, err)
	}
	c.forget(name)
	return nil
}

// hostBusy reports whether a live host pod of this node is in the namespace.
func (c *Controller) hostBusy(ns string) (bool, error) {
	pods, err := c.hostPods.Pods(ns).List(labels.Everything())
	if err != nil {
		return false, err
	}
	for _, p := range pods {
		if p.Spec.NodeName == c.cfg.Owner.NodeName {
			return true, nil
		}
	}
	return false, nil
}

func (c *Controller) idleFor(ns string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.idleSince[ns]
	if !ok {
		at = time.Now()
		c.idleSince[ns] = at
	}
	return time.Since(at)
}

func (c *Controller) forget(ns string) {
	c.mu.Lock()
	delete(c.idleSince, ns)
	c.mu.Unlock()
}

// contents reads what the namespace holds besides what every namespace has (kube-root-ca.crt, the default
// ServiceAccount, Tether's object count quota): objects of Tether's for this host, and anything else. It lists, once per namespace that
// became empty, not per pod.
func (c *Controller) contents(ctx context.Context, ns string) (ours, others bool, err error) {
	core := c.cfg.Client.CoreV1()
	var objs []metav1.Object
	keep := func(items []metav1.Object, standard string) {
		for _, o := range items {
			if o.GetName() != standard {
				objs = append(objs, o)
			}
		}
	}
	cms, err := core.ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, false, err
	}
	keep(controllers.Objects(cms.Items), "kube-root-ca.crt")
	sas, err := core.ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, false, err
	}
	keep(controllers.Objects(sas.Items), "default")
	svcs, err := core.Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, false, err
	}
	keep(controllers.Objects(svcs.Items), "")
	// A claim copy holds data: its namespace stays while the host claim does (controllers/volumes).
	claims, err := core.PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, false, err
	}
	keep(controllers.Objects(claims.Items), "")
	for _, o := range objs {
		if c.cfg.Owner.OwnsForCluster(o) {
			ours = true
		} else {
			others = true
		}
	}
	// Secrets tether-node may not list: the namespace's object count quota counts them. Tether's copies go with
	// their record (a ConfigMap, counted above as ours); Secrets counted while no record is left are someone
	// else's, or copies the member's garbage collector is still removing: looked at again after the grace period.
	n, known, err := controllers.SecretCount(ctx, c.cfg.Client, ns, c.cfg.Owner)
	switch {
	case errors.Is(err, controllers.ErrNoObjectCountQuota):
		// A namespace created without its quota: counted from now on.
		return true, others, controllers.EnsureObjectCountQuota(ctx, c.cfg.Client, ns, c.cfg.Owner)
	case err != nil:
		return false, false, err
	case !known: // not counted yet
		ours = true
	case n > 0:
		ours = true
	}
	return ours, others, nil
}
