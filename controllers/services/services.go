// Package services gives a member the host's Services where it runs Tether pods: in every namespace where this
// member runs a Tether pod, every host Service (but default/kubernetes) has an owned copy in the member, without
// selector and with a cluster IP of the member's own, and the host Service's EndpointSlices — whose addresses are
// the pod IPs the members report, and the host's own pods — are mirrored next to it. A pod in the member then
// resolves `web.shop.svc` to the member's copy, which forwards to every endpoint of the host Service, in whichever
// member (or the host) it runs; this assumes pod IPs are routable between the clusters.
package services

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/provider/forge"
)

// Name is the controller's name in logs and metrics.
const Name = "services"

// ReasonServiceConflict is the event reason on a host Service whose name is taken in a member by a Service or
// EndpointSlice that Tether does not own.
const ReasonServiceConflict = "MemberServiceConflict"

const (
	kindService = "service"
	kindSlice   = "slice"
)

// Config is what the controller of one member needs.
type Config struct {
	Member string
	Owner  api.Owner
	Client kubernetes.Interface
	// Host informers, shared by every member (handlers added in Run, removed when it returns).
	HostPods, HostServices, HostSlices cache.SharedIndexInformer
	// Member informers of the copies this node owns.
	Services, Slices cache.SharedIndexInformer
	// Recorder writes events on host Services.
	Recorder record.EventRecorder
	// Grace is how long the copies of a namespace stay once this member runs no Tether pod there any more.
	Grace  time.Duration
	Resync time.Duration
	// DeniedNamespaces are never given copies.
	DeniedNamespaces []string
	Metrics          *controllers.Metrics
}

// Controller is the Service and EndpointSlice controller of one member.
type Controller struct {
	cfg          Config
	r            *controllers.Reconciler
	hostServices corev1listers.ServiceLister
	hostSlices   discoverylisters.EndpointSliceLister
	services     corev1listers.ServiceLister
	slices       discoverylisters.EndpointSliceLister

	mu sync.Mutex
	// pods are the live host pods of this node by namespace; idleSince when a namespace lost its last one.
	pods      map[string]map[types.UID]bool
	idleSince map[string]time.Time
	started   time.Time
	changed   map[string]time.Time // key → first host change not yet applied
}

// New builds the controller; Run runs it and must be called.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.HostPods == nil || cfg.HostServices == nil || cfg.HostSlices == nil ||
		cfg.Services == nil || cfg.Slices == nil || cfg.Recorder == nil {
		return nil, errors.New("services: client, informers and recorder must be set")
	}
	c := &Controller{
		cfg:          cfg,
		hostServices: corev1listers.NewServiceLister(cfg.HostServices.GetIndexer()),
		hostSlices:   discoverylisters.NewEndpointSliceLister(cfg.HostSlices.GetIndexer()),
		services:     corev1listers.NewServiceLister(cfg.Services.GetIndexer()),
		slices:       discoverylisters.NewEndpointSliceLister(cfg.Slices.GetIndexer()),
		pods:         map[string]map[types.UID]bool{},
		idleSince:    map[string]time.Time{},
		changed:      map[string]time.Time{},
		started:      time.Now(),
	}
	c.r = controllers.New(c.sync, controllers.Options{Name: Name, Member: cfg.Member, Keys: c.keys, Resync: cfg.Resync, Metrics: cfg.Metrics})
	return c, nil
}

// Run works until ctx ends. The informers must have synced.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return c.r.RunWith(ctx, workers,
		controllers.Handler{Informer: c.cfg.HostPods, Handler: cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) { c.hostPod(obj, false) },
			UpdateFunc: func(_, obj any) { c.hostPod(obj, false) }, DeleteFunc: func(obj any) { c.hostPod(obj, true) }}},
		controllers.Handler{Informer: c.cfg.HostServices, Handler: c.enqueueAs(kindService, true)},
		controllers.Handler{Informer: c.cfg.HostSlices, Handler: c.enqueueAs(kindSlice, true)},
		controllers.Handler{Informer: c.cfg.Services, Handler: c.enqueueAs(kindService, false)},
		controllers.Handler{Informer: c.cfg.Slices, Handler: c.enqueueAs(kindSlice, false)})
}

func (c *Controller) enqueueAs(kind string, host bool) cache.ResourceEventHandler {
	return controllers.OnEvery(func(obj any) {
		o, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		if host && !c.inScope(o.GetNamespace()) && !c.hasCopy(kind, o.GetNamespace(), o.GetName()) {
			return // a namespace this member runs nothing in
		}
		k := kind + "/" + o.GetNamespace() + "/" + o.GetName()
		if host {
			c.mu.Lock()
			if _, ok := c.changed[k]; !ok {
				c.changed[k] = time.Now()
			}
			c.mu.Unlock()
		}
		c.r.Enqueue(k)
	})
}

// hostPod keeps the count of this node's live pods by namespace; a namespace that gains its first one or loses its
// last one has all its Services looked at again.
func (c *Controller) hostPod(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName != c.cfg.Owner.NodeName {
		return
	}
	live := !deleted && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
	c.mu.Lock()
	set := c.pods[p.Namespace]
	before := len(set) > 0
	switch {
	case live && !set[p.UID]:
		if set == nil {
			set = map[types.UID]bool{}
			c.pods[p.Namespace] = set
		}
		set[p.UID] = true
		delete(c.idleSince, p.Namespace)
	case !live && set[p.UID]:
		delete(set, p.UID)
		if len(set) == 0 {
			delete(c.pods, p.Namespace)
			c.idleSince[p.Namespace] = time.Now()
		}
	}
	after := len(c.pods[p.Namespace]) > 0
	c.mu.Unlock()
	if before != after {
		c.enqueueNamespace(p.Namespace)
	}
}

func (c *Controller) enqueueNamespace(ns string) {
	svcs, _ := c.hostServices.Services(ns).List(labels.Everything())
	for _, s := range svcs {
		c.r.Enqueue(kindService + "/" + ns + "/" + s.Name)
	}
	have, _ := c.services.Services(ns).List(labels.Everything())
	for _, s := range have {
		c.r.Enqueue(kindService + "/" + ns + "/" + s.Name)
	}
}

func (c *Controller) inScope(ns string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pods[ns]) > 0
}

// idleFor is how long the namespace has had no Tether pod of this member (0 while it has some).
func (c *Controller) idleFor(ns string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pods[ns]) > 0 {
		return 0
	}
	at, ok := c.idleSince[ns]
	if !ok {
		at = c.started // none since the start (or a copy made just before its first pod): a grace period from then
	}
	return max(time.Since(at), time.Nanosecond)
}

func (c *Controller) hasCopy(kind, ns, name string) bool {
	if kind == kindService {
		s, err := c.services.Services(ns).Get(name)
		return err == nil && c.cfg.Owner.Owns(s)
	}
	s, err := c.slices.EndpointSlices(ns).Get(name)
	return err == nil && c.cfg.Owner.Owns(s)
}

func (c *Controller) keys() []string {
	return append(controllers.Keys(kindService, c.cfg.Services.GetStore()), controllers.Keys(kindSlice, c.cfg.Slices.GetStore())...)
}

func (c *Controller) sync(ctx context.Context, k string) error {
	parts := strings.SplitN(k, "/", 3)
	if len(parts) != 3 {
		return nil
	}
	if parts[0] == kindService {
		return c.syncService(ctx, k, parts[1], parts[2])
	}
	return c.syncSlice(ctx, k, parts[1], parts[2])
}

// wanted tells whether the member should have a copy of the host Service ns/name now, and if not, how long to
// wait before removing one (the grace period of a namespace that lost its last pod).
func (c *Controller) wanted(ns, name string) (src *corev1.Service, wait time.Duration, err error) {
	if ns == metav1.NamespaceDefault && name == "kubernetes" || c.denied(ns) {
		return nil, 0, nil
	}
	src, err = c.hostServices.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if idle := c.idleFor(ns); idle > 0 {
		return nil, max(c.cfg.Grace-idle, 0), nil
	}
	return src, 0, nil
}

func (c *Controller) denied(ns string) bool {
	for _, d := range c.cfg.DeniedNamespaces {
		if d == ns {
			return true
		}
	}
	return false
}

func (c *Controller) syncService(ctx context.Context, k, ns, name string) error {
	client := c.cfg.Client.CoreV1().Services(ns)
	have, err := c.services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if have != nil && !c.cfg.Owner.Owns(have) {
		return nil
	}
	src, wait, err := c.wanted(ns, name)
	if err != nil {
		return err
	}
	if src == nil {
		if have == nil {
			return nil
		}
		if wait > 0 {
			c.r.EnqueueAfter(k, wait)
			return nil
		}
		return controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return client.Delete(ctx, name, o) })
	}
	want := forge.Service(src, c.cfg.Owner)
	if have != nil {
		switch forge.ServiceAction(have, want) {
		case forge.CopyInStep:
			c.enqueueSlicesOf(ns, name)
			return c.written(k, nil)
		case forge.CopyUpdate:
			_, err := client.Update(ctx, forge.UpdatedService(have, want), metav1.UpdateOptions{})
			return c.written(k, err)
		case forge.CopyReplace:
			if err := controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return client.Delete(ctx, name, o) }); err != nil {
				return err
			}
		}
	}
	_, err = client.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return c.conflict(ctx, src, kindService, ns, name)
	}
	return c.written(k, err)
}

// enqueueSlicesOf enqueues the host slices of a Service whose copy is in step, so that slices that waited for it
// (they are owned by it) follow.
func (c *Controller) enqueueSlicesOf(ns, service string) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service})
	slices, _ := c.hostSlices.EndpointSlices(ns).List(sel)
	for _, s := range slices {
		if !c.hasCopy(kindSlice, ns, s.Name) {
			c.r.Enqueue(kindSlice + "/" + ns + "/" + s.Name)
		}
	}
}

func (c *Controller) syncSlice(ctx context.Context, k, ns, name string) error {
	client := c.cfg.Client.DiscoveryV1().EndpointSlices(ns)
	have, err := c.slices.EndpointSlices(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if have != nil && !c.cfg.Owner.Owns(have) {
		return nil
	}
	var want *discoveryv1.EndpointSlice
	src, err := c.hostSlices.EndpointSlices(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if src != nil {
		service := src.Labels[discoveryv1.LabelServiceName]
		// Mirrored next to the member's copy of its Service, once that exists (the slice is owned by it).
		if copySvc, err := c.services.Services(ns).Get(service); err == nil && c.cfg.Owner.Owns(copySvc) &&
			copySvc.Spec.Type != corev1.ServiceTypeExternalName {
			want = forge.EndpointSlice(src, c.cfg.Owner, service, string(copySvc.UID))
		}
	}
	if want == nil {
		if have == nil {
			return nil
		}
		return controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return client.Delete(ctx, name, o) })
	}
	if have != nil {
		switch forge.EndpointSliceAction(have, want) {
		case forge.CopyInStep:
			return c.written(k, nil)
		case forge.CopyUpdate:
			up := have.DeepCopy()
			up.Labels, up.Annotations, up.OwnerReferences = want.Labels, want.Annotations, want.OwnerReferences
			up.Endpoints, up.Ports = want.Endpoints, want.Ports
			_, err := client.Update(ctx, up, metav1.UpdateOptions{})
			return c.written(k, err)
		case forge.CopyReplace:
			if err := controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return client.Delete(ctx, name, o) }); err != nil {
				return err
			}
		}
	}
	_, err = client.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if svc, gerr := c.hostServices.Services(ns).Get(want.Labels[discoveryv1.LabelServiceName]); gerr == nil {
			return c.conflict(ctx, svc, kindSlice, ns, name)
		}
		return nil
	}
	return c.written(k, err)
}

// conflict reports a member object of a copy's name that the cache of owned copies does not hold: Tether's own
// (the cache lags: retry) or someone else's (an event on the host Service; never touched).
func (c *Controller) conflict(ctx context.Context, hostSvc *corev1.Service, kind, ns, name string) error {
	var (
		o   metav1.Object
		err error
	)
	if kind == kindService {
		o, err = c.cfg.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	} else {
		o, err = c.cfg.Client.DiscoveryV1().EndpointSlices(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	if c.cfg.Owner.Owns(o) {
		return fmt.Errorf("%s %s/%s: the cache lags behind a copy of ours", kind, ns, name)
	}
	what := "Service"
	if kind == kindSlice {
		what = "EndpointSlice"
	}
	c.cfg.Recorder.Eventf(hostSvc, corev1.EventTypeWarning, ReasonServiceConflict,
		"member %s already has %s %s/%s that Tether does not own; it is left untouched", c.cfg.Member, what, ns, name)
	return nil
}

func (c *Controller) written(k string, err error) error {
	if err != nil {
		return fmt.Errorf("write member copy %s: %w", k, err)
	}
	c.mu.Lock()
	at, ok := c.changed[k]
	delete(c.changed, k)
	c.mu.Unlock()
	if ok {
		c.cfg.Metrics.ObserveLag(Name, c.cfg.Member, at)
	}
	return nil
}

// EnsureNamespace creates, before the first pod of a namespace is created in the member, the copies of the
// namespace's Services that are missing, so that the member's service environment variables exist for that pod.
// It reads caches only when nothing is missing.
func (c *Controller) EnsureNamespace(ctx context.Context, ns string) error {
	if c.denied(ns) {
		return nil
	}
	svcs, err := c.hostServices.Services(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, src := range svcs {
		if ns == metav1.NamespaceDefault && src.Name == "kubernetes" || c.hasCopy(kindService, ns, src.Name) {
			continue
		}
		_, err := c.cfg.Client.CoreV1().Services(ns).Create(ctx, forge.Service(src, c.cfg.Owner), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("copy service %s/%s: %w", ns, src.Name, err))
		}
	}
	return errors.Join(errs...)
}
