package provider

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

// Event reasons on host pods.
const (
	ReasonInvalidScheduling = "InvalidSchedulingAnnotation"
	ReasonNameConflict      = "MemberNameConflict"
	ReasonMemberPodDeleted  = "MemberPodDeleted"
	ReasonMissingDependency = "MissingDependency"
	// ReasonDependencyConflict: the member has a ServiceAccount, ConfigMap or Secret of the name the pod uses that
	// Tether does not own.
	ReasonDependencyConflict = "MemberObjectConflict"
	// ReasonDeniedNamespace: the pod's namespace is one Tether never uses in members.
	ReasonDeniedNamespace = "DeniedNamespace"
	// ReasonDaemonSetPod: a DaemonSet pod bound to the virtual node is not offloaded.
	ReasonDaemonSetPod = "DaemonSetPodNotOffloaded"
)

// CreatePod creates the member pod of a host pod, after what it needs in the member. A member pod this node already
// owns for the same host pod is adopted, with no write.
func (m *Member) CreatePod(ctx context.Context, host *corev1.Pod) error {
	ctx, cancel := m.withRequestTimeout(ctx)
	defer cancel()
	key := host.Namespace + "/" + host.Name
	if slices.Contains(m.cfg.DeniedNamespaces, host.Namespace) {
		msg := fmt.Sprintf("namespace %s is not offloaded: tether-node never uses it in members (--denied-namespaces)", host.Namespace)
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonDeniedNamespace, msg)
		m.pushHostStatus(host, pendingStatus(host, ReasonDeniedNamespace, msg))
		return nil // nothing to retry until the flag changes
	}
	if isDaemonSetPod(host) && !m.cfg.OffloadDaemonSetPods {
		msg := "DaemonSet pods are not offloaded (--offload-daemonset-pods)"
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonDaemonSetPod, msg)
		m.pushHostStatus(host, pendingStatus(host, ReasonDaemonSetPod, msg))
		return nil
	}
	if existing, err := m.pods.Pods(host.Namespace).Get(host.Name); err == nil {
		return m.reconcileExisting(ctx, host, existing)
	}
	member, err := forge.Pod(host, forge.PodOptions{Owner: m.owner, HostLevel: m.cfg.HostLevel})
	if err != nil {
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonInvalidScheduling, err.Error())
		m.pushHostStatus(host, pendingStatus(host, ReasonInvalidScheduling, err.Error()))
		return nil // nothing to retry until the pod changes
	}
	if err := m.ensureDependencies(ctx, host, member); err != nil {
		return err
	}
	_, err = m.cfg.MemberClient.CoreV1().Pods(member.Namespace).Create(ctx, member, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// The cache lags behind a create of ours or someone else's: decide on the live object.
		existing, gerr := m.cfg.MemberClient.CoreV1().Pods(host.Namespace).Get(ctx, host.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("create member pod %s: %w", key, gerr)
		}
		return m.reconcileExisting(ctx, host, existing)
	}
	if err != nil {
		return fmt.Errorf("create member pod %s: %w", key, err)
	}
	if m.cfg.CreateDelay != nil {
		m.cfg.CreateDelay.Observe(time.Since(boundAt(host)).Seconds())
	}
	log.G(ctx).WithField("pod", key).WithField("member", m.cfg.Member).Debug("member pod created")
	return nil
}

// reconcileExisting decides about a member pod found where a host pod's copy should be.
func (m *Member) reconcileExisting(ctx context.Context, host, existing *corev1.Pod) error {
	key := host.Namespace + "/" + host.Name
	switch {
	case !m.owner.Owns(existing):
		msg := fmt.Sprintf("member %s already has pod %s that Tether does not own; it is left untouched", m.cfg.Member, key)
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonNameConflict, msg)
		return fmt.Errorf("%s", msg)
	case existing.Annotations[api.AnnotationHostUID] == string(host.UID):
		return nil // adopted
	default:
		// A copy of an earlier host pod of the same name (a StatefulSet's, say): remove it, then create anew.
		if err := m.deleteMemberPod(ctx, existing, nil); err != nil {
			return err
		}
		return fmt.Errorf("member pod %s belongs to an earlier host pod; deleted it, will create anew", key)
	}
}

// UpdatePod has nothing to do: the member pod's spec is immutable in what matters, and labels stay the host's.
func (m *Member) UpdatePod(context.Context, *corev1.Pod) error { return nil }

// DeletePod deletes the member pod of a host pod with the host's grace period and a UID precondition. The host pod
// goes once the member pod is gone (see onMemberPodDeleted).
func (m *Member) DeletePod(ctx context.Context, host *corev1.Pod) error {
	ctx, cancel := m.withRequestTimeout(ctx)
	defer cancel()
	member, err := m.pods.Pods(host.Namespace).Get(host.Name)
	if apierrors.IsNotFound(err) {
		m.finishHostDeletion(ctx, host)
		return errdefs.NotFoundf("member pod %s/%s not found", host.Namespace, host.Name)
	}
	if err != nil {
		return err
	}
	if !m.owner.Owns(member) || member.Annotations[api.AnnotationHostUID] != string(host.UID) {
		return errdefs.NotFoundf("no member pod of %s/%s (uid %s)", host.Namespace, host.Name, host.UID)
	}
	return m.deleteMemberPod(ctx, member, host.DeletionGracePeriodSeconds)
}

func (m *Member) deleteMemberPod(ctx context.Context, member *corev1.Pod, grace *int64) error {
	err := m.cfg.MemberClient.CoreV1().Pods(member.Namespace).Delete(ctx, member.Name, metav1.DeleteOptions{
		GracePeriodSeconds: grace,
		Preconditions:      metav1.NewUIDPreconditions(string(member.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete member pod %s/%s: %w", member.Namespace, member.Name, err)
	}
	// Deleted, gone already, or replaced by a pod that is not this one.
	m.deleted.Store(member.UID, time.Now())
	return nil
}

// GetPod returns the host view of a member pod this node owns: the host pod with the member's status. A member pod
// whose host pod is gone comes back as a bare pod, so that the pod controller deletes it.
func (m *Member) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	member, err := m.pods.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, errdefs.NotFoundf("pod %s/%s not found in member %s", namespace, name, m.cfg.Member)
	}
	if err != nil {
		return nil, err
	}
	if !m.owner.Owns(member) {
		return nil, errdefs.NotFoundf("pod %s/%s in member %s is not Tether's", namespace, name, m.cfg.Member)
	}
	// The copy of an earlier host pod of the same name is not this pod's: the pod controller must create the new
	// one (CreatePod removes the stale copy first), not take it for this pod's and only "update" it.
	if host, err := m.cfg.HostPods.Pods(namespace).Get(name); err == nil && string(host.UID) != member.Annotations[api.AnnotationHostUID] {
		return nil, errdefs.NotFoundf("pod %s/%s in member %s is the copy of an earlier pod", namespace, name, m.cfg.Member)
	}
	return m.hostView(member), nil
}

func (m *Member) hostView(member *corev1.Pod) *corev1.Pod {
	host, err := m.cfg.HostPods.Pods(member.Namespace).Get(member.Name)
	if err != nil || string(host.UID) != member.Annotations[api.AnnotationHostUID] {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: member.Namespace, Name: member.Name, UID: types.UID(member.Annotations[api.AnnotationHostUID]),
		}, Status: member.Status}
	}
	out := host.DeepCopy()
	out.Status = forge.PodStatus(host, member)
	return out
}

// GetPodStatus returns the host view of a member pod's status.
func (m *Member) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	p, err := m.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &p.Status, nil
}

// GetPods returns the host view of every member pod this node owns.
func (m *Member) GetPods(context.Context) ([]*corev1.Pod, error) {
	pods, err := m.OwnedPods()
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, 0, len(pods))
	for _, p := range pods {
		out = append(out, m.hostView(p))
	}
	return out, nil
}

// NotifyPods registers the pod controller's status callback; statuses are pushed from member pod events. Events
// seen before the callback existed (the informers' first sync after a restart) are made up for by one pass over
// the cache, which pushes only statuses that differ from the host's.
func (m *Member) NotifyPods(ctx context.Context, cb func(*corev1.Pod)) {
	m.mu.Lock()
	m.notifyPod = cb
	m.mu.Unlock()
	go m.pushAllStatuses(ctx)
}

func (m *Member) pushAllStatuses(ctx context.Context) {
	pods, err := m.OwnedPods()
	if err != nil {
		log.G(ctx).WithError(err).Error("list member pods")
		return
	}
	for _, p := range pods {
		if ctx.Err() != nil {
			return
		}
		m.onMemberPod(p, p)
	}
}

func (m *Member) onMemberPod(old, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if o, _ := old.(*corev1.Pod); o == nil || o.Spec.NodeName != pod.Spec.NodeName || terminal(o) != terminal(pod) {
		m.triggerRecompute()
	}
	if !m.owner.Owns(pod) {
		return
	}
	host, err := m.cfg.HostPods.Pods(pod.Namespace).Get(pod.Name)
	if err != nil || string(host.UID) != pod.Annotations[api.AnnotationHostUID] ||
		(pod.DeletionTimestamp != nil && host.DeletionTimestamp == nil) {
		// The host pod is gone or replaced (the copy goes), or someone deletes the copy in the member (the host pod
		// goes, so that its controller replaces it): the repair worker does it, handlers only enqueue.
		m.enqueueRepair(pod.Namespace, pod.Name)
		return
	}
	if pod.Spec.NodeName == "" && len(pod.Status.Conditions) == 0 {
		// The member scheduler has not looked at it yet: its status says nothing the host does not know, and
		// pushing it would only drop the host's PodScheduled condition — one host write now and one more when
		// the member binds the pod. An unschedulable member pod has a condition and goes through.
		return
	}
	m.pushHostStatus(host, forge.PodStatus(host, pod))
}

func (m *Member) onMemberPodDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.triggerRecompute()
	if !m.owner.Owns(pod) {
		return
	}
	m.pushed.Delete(types.UID(pod.Annotations[api.AnnotationHostUID]))
	// The repair worker finishes a deleting host pod, replaces a running one whose copy someone else deleted, and
	// creates the copy of a new host pod of that name that waited for this one to go.
	m.enqueueRepair(pod.Namespace, pod.Name)
}

// hostPodLost deletes a host pod whose member pod was deleted by someone else than Tether, so that its
// controller replaces it.
func (m *Member) hostPodLost(host *corev1.Pod, what string) {
	msg := fmt.Sprintf("member pod in %s %s; deleting the host pod so that its controller replaces it", m.cfg.Member, what)
	m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonMemberPodDeleted, msg)
	err := m.cfg.HostClient.CoreV1().Pods(host.Namespace).Delete(m.ctx, host.Name, metav1.DeleteOptions{
		Preconditions: metav1.NewUIDPreconditions(string(host.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.G(m.ctx).WithError(err).WithField("pod", host.Namespace+"/"+host.Name).Warn("delete host pod")
	}
}

// pushHostStatus hands a new host status to the pod controller, unless the host pod already has it.
func (m *Member) pushHostStatus(host *corev1.Pod, st corev1.PodStatus) {
	if equality.Semantic.DeepEqual(host.Status, st) {
		return
	}
	m.mu.Lock()
	cb := m.notifyPod
	m.mu.Unlock()
	if cb == nil {
		return
	}
	if m.cfg.StatusDelay != nil {
		m.pushed.LoadOrStore(host.UID, time.Now())
	}
	// Metadata and status only: the pod controller keeps the last pushed pod of every pod and sends it with a
	// status update, which takes the spec from the stored pod anyway. A spec here would be one more copy of every
	// pod spec in memory.
	cb(&corev1.Pod{TypeMeta: host.TypeMeta, ObjectMeta: *host.ObjectMeta.DeepCopy(), Status: st})
}

// finishHostDeletion removes a deleting host pod whose member pod is gone, as a kubelet does once the pod's
// containers have stopped.
func (m *Member) finishHostDeletion(ctx context.Context, host *corev1.Pod) {
	if host.DeletionTimestamp == nil {
		return
	}
	err := m.cfg.HostClient.CoreV1().Pods(host.Namespace).Delete(ctx, host.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      metav1.NewUIDPreconditions(string(host.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.G(ctx).WithError(err).WithField("pod", host.Namespace+"/"+host.Name).Warn("finish deleting host pod")
	}
}

// boundAt is when the host pod was bound to its node: its PodScheduled condition's transition (whole seconds), or its
// creation when it was created bound.
func boundAt(p *corev1.Pod) time.Time {
	at := p.CreationTimestamp.Time
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue && c.LastTransitionTime.After(at) {
			at = c.LastTransitionTime.Time
		}
	}
	return at
}

func pendingStatus(host *corev1.Pod, reason, message string) corev1.PodStatus {
	st := *host.Status.DeepCopy()
	st.Phase = corev1.PodPending
	st.Reason, st.Message = reason, message
	return st
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func isDaemonSetPod(p *corev1.Pod) bool {
	ref := metav1.GetControllerOf(p)
	return ref != nil && ref.Kind == "DaemonSet"
}
