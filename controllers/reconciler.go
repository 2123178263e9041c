// Package controllers holds what keeps the member copies of offloaded pods' dependencies in step with the host:
// one small level-triggered reconciler (this file) and one package per kind under controllers/. tether-node runs
// one set per member, beside the member's virtual node.
//
// Every controller follows the same rules: event handlers only enqueue keys; a worker reads the caches and writes;
// a failed key is retried with backoff and never dropped; a periodic pass enqueues every key again, so that
// whatever an event missed is put right; and a member object is updated or deleted only if Tether owns it (its
// ownership labels and host-UID annotation), with a UID or resourceVersion precondition.
package controllers

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SyncFunc puts one key right. An error retries the key with backoff.
type SyncFunc func(ctx context.Context, key string) error

// Reconciler is a named work queue of string keys with its workers and its periodic pass.
type Reconciler struct {
	name   string
	member string
	sync   SyncFunc
	// keys lists every key the periodic pass enqueues (from caches); nil: no periodic pass.
	keys    func() []string
	resync  time.Duration
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *Metrics

	mu sync.Mutex
	// failing holds the keys whose last reconcile failed: the periodic pass reports the others as in sync.
	failing map[string]struct{}
}

// Options shape a Reconciler.
type Options struct {
	// Name names the controller in logs, metrics and the queue; Member the member it works for.
	Name, Member string
	// Keys lists every key the periodic pass enqueues, every Resync; nil or Resync 0: no periodic pass.
	Keys   func() []string
	Resync time.Duration
	// Metrics records reconciles and their outcome; nil: none.
	Metrics *Metrics
}

// New builds a Reconciler; Run works it and must be called (its queue lives until Run returns).
func New(sync SyncFunc, o Options) *Reconciler {
	return &Reconciler{
		name: o.Name, member: o.Member, sync: sync, keys: o.Keys, resync: o.Resync, metrics: o.Metrics, failing: map[string]struct{}{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: o.Name + "-" + o.Member}),
	}
}

// Enqueue asks for key to be reconciled.
func (r *Reconciler) Enqueue(key string) {
	r.queue.Add(key)
	r.metrics.setDepth(r.name, r.member, r.queue.Len())
}

// EnqueueAfter asks for key to be reconciled once d has passed.
func (r *Reconciler) EnqueueAfter(key string, d time.Duration) { r.queue.AddAfter(key, d) }

// Len is the number of keys waiting.
func (r *Reconciler) Len() int { return r.queue.Len() }

// Run works the queue with workers goroutines until ctx ends, and returns once they have stopped.
func (r *Reconciler) Run(ctx context.Context, workers int) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("controller", r.name))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer r.queue.ShutDown()
	for range workers {
		wg.Go(func() {
			for r.next(ctx) {
			}
		})
	}
	var tick <-chan time.Time
	if r.keys != nil && r.resync > 0 {
		t := time.NewTicker(r.resync)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			keys := r.keys()
			for _, k := range keys {
				r.queue.Add(k)
			}
			r.mu.Lock()
			failing := len(r.failing)
			r.mu.Unlock()
			r.metrics.setObjects(r.name, r.member, max(len(keys)-failing, 0), failing)
		}
	}
}

func (r *Reconciler) next(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	r.metrics.setDepth(r.name, r.member, r.queue.Len())
	err := r.sync(ctx, key)
	r.metrics.observe(r.name, r.member, err)
	r.mu.Lock()
	if err != nil {
		r.failing[key] = struct{}{}
	} else {
		delete(r.failing, key)
	}
	r.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			log.G(ctx).WithField("key", key).WithError(err).Debug("reconcile failed; retrying")
			r.queue.AddRateLimited(key)
		}
		return true
	}
	r.queue.Forget(key)
	return true
}

// Metrics are the controllers' metrics, shared by every member's controllers.
type Metrics struct {
	reconciles *prometheus.CounterVec
	lag        *prometheus.HistogramVec
	depth      *prometheus.GaugeVec
	objects    *prometheus.GaugeVec
}

// NewMetrics builds the controllers' metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_node_controller_reconciles_total",
			Help: "Reconciles of member copies, by controller, member and result (ok, error).",
		}, []string{"controller", "member", "result"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tether_node_controller_lag_seconds",
			Help:    "From the host change a controller saw to the member write that applied it, by controller and member.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"controller", "member"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_node_controller_queue_depth",
			Help: "Keys waiting in a controller's queue, by controller and member.",
		}, []string{"controller", "member"}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tether_node_controller_objects",
			Help: "Objects a controller keeps, by controller, member and state: in_sync (last reconcile succeeded) or failing; set by each periodic pass.",
		}, []string{"controller", "member", "state"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.reconciles, m.lag, m.depth, m.objects} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) observe(controller, member string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reconciles.WithLabelValues(controller, member, result).Inc()
}

func (m *Metrics) setDepth(controller, member string, n int) {
	if m != nil {
		m.depth.WithLabelValues(controller, member).Set(float64(n))
	}
}

func (m *Metrics) setObjects(controller, member string, inSync, failing int) {
	if m != nil {
		m.objects.WithLabelValues(controller, member, "in_sync").Set(float64(inSync))
		m.objects.WithLabelValues(controller, member, "failing").Set(float64(failing))
	}
}

// ObserveLag records the time from a host change (since) to the member write that applied it.
func (m *Metrics) ObserveLag(controller, member string, since time.Time) {
	if m == nil || since.IsZero() {
		return
	}
	m.lag.WithLabelValues(controller, member).Observe(time.Since(since).Seconds())
}

// Handler is an event handler for one informer, added for the time of RunWith.
type Handler struct {
	Informer cache.SharedIndexInformer
	Handler  cache.ResourceEventHandler
}

// OnEvery is a handler that calls f with the object of every add, update and delete (for a delete whose final
// state is unknown, its last known state).
func OnEvery(f func(obj any)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, obj any) { f(obj) }, DeleteFunc: func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		f(obj)
	}}
}

// RunWith adds the handlers, works the queue as Run does until ctx ends, and removes the handlers again (shared
// informers outlive a member's controllers).
func (r *Reconciler) RunWith(ctx context.Context, workers int, handlers ...Handler) error {
	for _, h := range handlers {
		reg, err := h.Informer.AddEventHandler(h.Handler)
		if err != nil {
			return err
		}
		inf := h.Informer
		defer func() { _ = inf.RemoveEventHandler(reg) }()
	}
	r.Run(ctx, workers)
	return nil
}
