// Package events brings the events a member records about Tether's member pods (Scheduled, FailedScheduling,
// Pulled, BackOff, Unhealthy, Killing, …) up to their host pods, so that `kubectl describe pod` on the host shows
// what happened in the member. The host recorder aggregates repeats as a kubelet's does.
package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
)

// Name is the controller's name in logs and metrics.
const Name = "events"

// Config is what the controller of one member needs.
type Config struct {
	Member string
	Owner  api.Owner
	// Events is the member's informer of pod events (field selector involvedObject.kind=Pod); MemberPods its pod
	// lister; HostPods the host's.
	Events     cache.SharedIndexInformer
	MemberPods corev1listers.PodLister
	HostPods   corev1listers.PodLister
	// Recorder writes the events on host pods.
	Recorder record.EventRecorder
	// Since: events last seen before it are not relayed (those a restart of tether-node would relay again).
	Since   time.Time
	Metrics *controllers.Metrics
}

// Controller relays one member's pod events.
type Controller struct {
	cfg    Config
	r      *controllers.Reconciler
	events corev1listers.EventLister
	// sent is the count of each member event already relayed, by event UID.
	mu   sync.Mutex
	sent map[types.UID]int32
}

// New builds the controller; Run runs it.
func New(cfg Config) (*Controller, error) {
	if cfg.Events == nil || cfg.MemberPods == nil || cfg.HostPods == nil || cfg.Recorder == nil {
		return nil, errors.New("events: informer, listers and recorder must be set")
	}
	c := &Controller{cfg: cfg, events: corev1listers.NewEventLister(cfg.Events.GetIndexer()), sent: map[types.UID]int32{}}
	c.r = controllers.New(c.sync, controllers.Options{Name: Name, Member: cfg.Member, Metrics: cfg.Metrics})
	return c, nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	enqueue := func(obj any) {
		if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			c.r.Enqueue(k)
		}
	}
	reg, err := c.cfg.Events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if e, ok := obj.(*corev1.Event); ok {
				c.mu.Lock()
				delete(c.sent, e.UID)
				c.mu.Unlock()
			}
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = c.cfg.Events.RemoveEventHandler(reg) }()
	c.r.Run(ctx, workers)
	return nil
}

func (c *Controller) sync(_ context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	e, err := c.events.Events(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if lastSeen(e).Before(c.cfg.Since) {
		return nil
	}
	count := max(e.Count, 1)
	if e.Series != nil {
		count = max(count, e.Series.Count)
	}
	c.mu.Lock()
	sent := c.sent[e.UID]
	c.mu.Unlock()
	if count <= sent {
		return nil
	}
	host, ok := c.hostPodOf(e.InvolvedObject)
	if !ok {
		return nil
	}
	msg := fmt.Sprintf("member %s: %s", c.cfg.Member, e.Message)
	if e.Source.Host != "" {
		msg = fmt.Sprintf("member %s, node %s: %s", c.cfg.Member, e.Source.Host, e.Message)
	}
	// Each occurrence once: the recorder folds repeats into one host event with a count.
	for range count - sent {
		c.cfg.Recorder.Event(host, e.Type, e.Reason, msg)
	}
	c.mu.Lock()
	c.sent[e.UID] = count
	c.mu.Unlock()
	return nil
}

// hostPodOf is the host pod whose member copy the event is about: only an owned copy of a live host pod with that
// UID, never another member pod.
func (c *Controller) hostPodOf(ref corev1.ObjectReference) (*corev1.Pod, bool) {
	if ref.Kind != "Pod" {
		return nil, false
	}
	member, err := c.cfg.MemberPods.Pods(ref.Namespace).Get(ref.Name)
	if err != nil || member.UID != ref.UID || !c.cfg.Owner.Owns(member) {
		return nil, false
	}
	host, err := c.cfg.HostPods.Pods(ref.Namespace).Get(ref.Name)
	if err != nil || string(host.UID) != member.Annotations[api.AnnotationHostUID] || host.Spec.NodeName != c.cfg.Owner.NodeName {
		return nil, false
	}
	return host, true
}

func lastSeen(e *corev1.Event) time.Time {
	t := e.LastTimestamp.Time
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.EventTime.After(t) {
		t = e.EventTime.Time
	}
	if t.IsZero() {
		t = e.CreationTimestamp.Time
	}
	return t
}
