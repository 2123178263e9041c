// Package podmeta brings what may change on a running host pod down to its member pod: labels and annotations
// (`kubectl label pod` on the host reaches the pod that runs in the member, where the member's own Services,
// NetworkPolicies and controllers select by labels), ephemeral containers (`kubectl debug`) and in-place resizes
// (`kubectl patch --subresource resize`), the last two where the member's apiserver takes them.
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
	"k8s.io/client-go/tools/record"

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
	// Recorder writes events on host pods (a resize or ephemeral container the member refused).
	Recorder record.EventRecorder
	Metrics  *controllers.Metrics
}

// Event reasons on host pods.
const (
	ReasonResizeNotRelayed    = "ResizeNotRelayed"
	ReasonEphemeralNotRelayed = "EphemeralContainerNotRelayed"
)

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
	if cfg.Client == nil || cfg.HostPods == nil || cfg.MemberPods == nil || cfg.Recorder == nil {
		return nil, errors.New("podmeta: client, host pod informer, member pod lister and recorder must be set")
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
		maps.Equal(o.Labels, p.Labels) && maps.Equal(o.Annotations, p.Annotations) && !specChanged(o, p) {
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
	if err := c.relaySpec(ctx, host, member); err != nil {
		return err
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

// specChanged: a resize or a new ephemeral container between two versions of a host pod.
func specChanged(o, p *corev1.Pod) bool {
	if len(o.Spec.EphemeralContainers) != len(p.Spec.EphemeralContainers) {
		return true
	}
	resize, _ := forge.PodSpecChanges(p, o)
	return resize
}

// relaySpec brings a resize and new ephemeral containers of the host pod to its member pod. The member's cache
// holds only part of a pod's spec: the member pod is read once when there is something to relay.
func (c *Controller) relaySpec(ctx context.Context, host, cached *corev1.Pod) error {
	resize, added := forge.PodSpecChanges(host, cached)
	if !resize && len(added) == 0 {
		return nil
	}
	pods := c.cfg.Client.CoreV1().Pods(host.Namespace)
	member, err := pods.Get(ctx, host.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if member.UID != cached.UID {
		return nil
	}
	if len(added) > 0 {
		up := member.DeepCopy()
		up.Spec.EphemeralContainers = append(up.Spec.EphemeralContainers, added...)
		out, err := pods.UpdateEphemeralContainers(ctx, host.Name, up, metav1.UpdateOptions{})
		switch {
		case err == nil:
			member = out
		case refused(err):
			c.cfg.Recorder.Eventf(host, corev1.EventTypeWarning, ReasonEphemeralNotRelayed, "member %s refused the ephemeral container: %v", c.cfg.Member, err)
		default:
			return fmt.Errorf("add ephemeral containers to member pod %s/%s: %w", host.Namespace, host.Name, err)
		}
	}
	if resize {
		up := member.DeepCopy()
		for i := range up.Spec.Containers {
			if j := slices.IndexFunc(host.Spec.Containers, func(h corev1.Container) bool { return h.Name == up.Spec.Containers[i].Name }); j >= 0 {
				up.Spec.Containers[i].Resources = *host.Spec.Containers[j].Resources.DeepCopy()
			}
		}
		_, err := pods.UpdateResize(ctx, host.Name, up, metav1.UpdateOptions{})
		switch {
		case err == nil:
		case refused(err):
			c.cfg.Recorder.Eventf(host, corev1.EventTypeWarning, ReasonResizeNotRelayed, "member %s did not take the resize: %v", c.cfg.Member, err)
		default:
			return fmt.Errorf("resize member pod %s/%s: %w", host.Namespace, host.Name, err)
		}
	}
	return nil
}

// refused: errors that a retry would not change (the member lacks the subresource, or rejects the change).
func refused(err error) bool {
	return apierrors.IsMethodNotSupported(err) || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) ||
		apierrors.IsBadRequest(err) || apierrors.IsNotFound(err)
}
