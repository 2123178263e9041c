// Package events brings the events a member records about Tether's member pods (Scheduled, FailedScheduling,
// Pulled, BackOff, Unhealthy, Killing, …) up to their host pods, so that `kubectl describe pod` on the host shows
// what happened in the member. Each member event becomes one host event of a name derived from it, whose count
// follows the member's (the member's recorder has aggregated the repeats already): one host write per member event
// and per repeat, written by the controller's workers in parallel, never dropped.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	// Client writes the events in the host.
	Client kubernetes.Interface
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
	if cfg.Events == nil || cfg.MemberPods == nil || cfg.HostPods == nil || cfg.Client == nil {
		return nil, errors.New("events: informer, listers and host client must be set")
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

func (c *Controller) sync(ctx context.Context, key string) error {
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
	want := c.hostEvent(host, e, count)
	events := c.cfg.Client.CoreV1().Events(host.Namespace)
	_, err = events.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		patch := fmt.Appendf(nil, `{"count":%d,"lastTimestamp":%q,"message":%q}`, count, want.LastTimestamp.UTC().Format(time.RFC3339), want.Message)
		_, err = events.Patch(ctx, want.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("relay member event %s to host pod %s/%s: %w", key, host.Namespace, host.Name, err)
	}
	c.mu.Lock()
	c.sent[e.UID] = count
	c.mu.Unlock()
	c.cfg.Metrics.ObserveLag(Name, c.cfg.Member, lastSeen(e))
	return nil
}

// hostEvent is the host event of a member event about host's copy: on the host pod, with the member's reason, type
// and count, the member and its node as source, and a name derived from the member event's UID, so that a repeat
// updates it.
func (c *Controller) hostEvent(host *corev1.Pod, e *corev1.Event, count int32) *corev1.Event {
	first, last := e.FirstTimestamp, metav1.NewTime(lastSeen(e))
	if first.IsZero() {
		first = last
	}
	sum := sha256.Sum256([]byte(c.cfg.Member + "/" + string(e.UID)))
	prefix := host.Name
	if len(prefix) > 200 {
		prefix = prefix[:200]
	}
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: prefix + "." + hex.EncodeToString(sum[:8]), Namespace: host.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: host.Namespace, Name: host.Name,
			UID: host.UID, FieldPath: e.InvolvedObject.FieldPath},
		Reason: e.Reason, Type: e.Type, Message: "member " + c.cfg.Member + ": " + e.Message,
		Source:         corev1.EventSource{Component: "member/" + c.cfg.Member, Host: e.Source.Host},
		FirstTimestamp: first, LastTimestamp: last, Count: count,
		ReportingController: api.EventReportingController, ReportingInstance: c.cfg.Member,
	}
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
