package provider

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// What the virtual-kubelet pod controller is given instead of the host's pod client and pod lister, to undo three
// of its habits (v1.13, node/pod.go):
//   - it force-deletes a host pod when its grace period ends, whether or not the member pod is gone;
//   - it deletes a host pod by name when the last pod pushed under that name carries a deletion timestamp, which
//     after a same-name recreation can be the predecessor's;
//   - it writes a whole pod with UpdateStatus, metadata included, from a snapshot taken when the status was
//     pushed (or, after a provider error, from the informer's object with no resourceVersion), which can revert
//     a label, an annotation or a finalizer written meanwhile;
//   - after a provider error it marks restartPolicy: Never pods Failed, and, with SkipDownwardAPIResolution, it
//     writes that into the informer's own object.

// providerFailed is the status reason virtual-kubelet's handleProviderError writes.
const providerFailed = "ProviderFailed"

// HostPodClient wraps the host's pod client for the pod controller: a force delete of a host pod whose member
// copy still exists is refused (tether-node finishes the deletion once the copy is gone), so is a delete of a host
// pod that is not being deleted (tether-node does that itself, UID-checked), and a status update
// writes the status alone onto the host pod as the cache holds it, so that metadata never goes back.
func (m *Member) HostPodClient(real corev1client.PodsGetter) corev1client.PodsGetter {
	return hostPodsGetter{real: real, m: m}
}

type hostPodsGetter struct {
	real corev1client.PodsGetter
	m    *Member
}

func (g hostPodsGetter) Pods(namespace string) corev1client.PodInterface {
	return hostPodClient{PodInterface: g.real.Pods(namespace), m: g.m, namespace: namespace}
}

type hostPodClient struct {
	corev1client.PodInterface
	m         *Member
	namespace string
}

// errMemberPodRemains is what the pod controller's force delete gets while the member pod exists. A Conflict, so
// that it stops trying: the repair pass and the member pod's deletion event finish the host pod.
func errMemberPodRemains(name string) error {
	return apierrors.NewConflict(corev1.Resource("pods"), name,
		errors.New("its member pod still exists; tether-node deletes the host pod once the member pod is gone"))
}

// errNotDeleting is what the pod controller gets when it deletes a host pod that is not being deleted: it does so
// when the last pod pushed to it under that name says the member deleted it ("deleted by provider", node/pod.go),
// and after a same-name recreation that pushed pod can be the predecessor's. tether-node deletes such host pods
// itself (hostPodLost), with the UID of the one it means.
func errNotDeleting(name string) error {
	return apierrors.NewConflict(corev1.Resource("pods"), name,
		errors.New("the host pod is not being deleted; tether-node deletes a host pod whose member pod went, itself"))
}

func (c hostPodClient) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	if host, err := c.m.cfg.HostPods.Pods(c.namespace).Get(name); err == nil {
		if host.DeletionTimestamp == nil {
			return errNotDeleting(name)
		}
		if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds == 0 && c.m.HasCopyOf(host) {
			return errMemberPodRemains(name)
		}
	}
	return c.PodInterface.Delete(ctx, name, opts)
}

func (c hostPodClient) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	cur, err := c.m.cfg.HostPods.Pods(c.namespace).Get(pod.Name)
	if err != nil {
		return nil, err
	}
	if pod.UID != "" && pod.UID != cur.UID {
		// A status for an earlier pod of the same name.
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
	}
	up := cur.DeepCopy()
	if pod.Status.Reason == providerFailed {
		// A create that failed is retried (by the pod controller, then by the repair pass): the pod waits, it has
		// not failed, whatever its restart policy.
		if cur.Status.Phase != "" && cur.Status.Phase != corev1.PodPending {
			return cur, nil
		}
		up.Status.Phase, up.Status.Reason, up.Status.Message = corev1.PodPending, pod.Status.Reason, pod.Status.Message
	} else {
		up.Status = *pod.Status.DeepCopy()
	}
	if equality.Semantic.DeepEqual(up.Status, cur.Status) {
		c.m.pushed.Delete(cur.UID)
		return cur, nil
	}
	out, err := c.PodInterface.UpdateStatus(ctx, up, opts)
	if err == nil {
		c.m.statusWritten(cur.UID)
	}
	return out, err
}

// statusWritten observes the status delay of a host pod whose status was just written.
func (m *Member) statusWritten(uid types.UID) {
	if at, ok := m.pushed.LoadAndDelete(uid); ok && m.cfg.StatusDelay != nil {
		m.cfg.StatusDelay.Observe(time.Since(at.(time.Time)).Seconds())
	}
}

// CopyingPodLister hands out copies, so that whoever changes a pod it got (the pod controller does) never
// changes the informer's cache.
func CopyingPodLister(l corev1listers.PodLister) corev1listers.PodLister { return copyingLister{l} }

type copyingLister struct{ l corev1listers.PodLister }

func (c copyingLister) List(sel labels.Selector) ([]*corev1.Pod, error) {
	return copyPods(c.l.List(sel))
}

func (c copyingLister) Pods(namespace string) corev1listers.PodNamespaceLister {
	return copyingNamespaceLister{c.l.Pods(namespace)}
}

type copyingNamespaceLister struct {
	l corev1listers.PodNamespaceLister
}

func (c copyingNamespaceLister) List(sel labels.Selector) ([]*corev1.Pod, error) {
	return copyPods(c.l.List(sel))
}

func (c copyingNamespaceLister) Get(name string) (*corev1.Pod, error) {
	p, err := c.l.Get(name)
	if err != nil {
		return nil, err
	}
	return p.DeepCopy(), nil
}

func copyPods(pods []*corev1.Pod, err error) ([]*corev1.Pod, error) {
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(pods))
	for i, p := range pods {
		out[i] = p.DeepCopy()
	}
	return out, nil
}
