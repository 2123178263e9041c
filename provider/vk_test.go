package provider

import (
	"time"

	"testing"

	"github.com/prometheus/client_golang/prometheus"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/api"
)

func TestHostPodClientWritesStatusOnly(t *testing.T) {
	host := hostPod("1")
	host.Labels = map[string]string{"version": "new"}
	host.Spec.RestartPolicy = corev1.RestartPolicyNever
	m, _, _ := newTestMember(t, []*corev1.Pod{host})
	hostClient := m.cfg.HostClient.(*fake.Clientset)
	pods := m.HostPodClient(hostClient.CoreV1()).Pods("shop")
	ctx := t.Context()

	// A status pushed with an older snapshot of the metadata.
	snapshot := host.DeepCopy()
	snapshot.Labels = map[string]string{"version": "old"}
	snapshot.Finalizers = []string{"example.com/gone"}
	snapshot.Status.Phase = corev1.PodRunning
	if _, err := pods.UpdateStatus(ctx, snapshot, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := hostClient.CoreV1().Pods("shop").Get(ctx, "web", metav1.GetOptions{})
	if got.Labels["version"] != "new" || len(got.Finalizers) != 0 || got.Status.Phase != corev1.PodRunning {
		t.Errorf("after a status push: labels %v, finalizers %v, phase %s; want the host's metadata and the new status",
			got.Labels, got.Finalizers, got.Status.Phase)
	}

	// A status for an earlier pod of the same name is not written.
	other := host.DeepCopy()
	other.UID = "uid-earlier"
	if _, err := pods.UpdateStatus(ctx, other, metav1.UpdateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("status of another pod: err = %v, want NotFound", err)
	}
}

func TestHostPodClientProviderErrorIsNoFailure(t *testing.T) {
	host := hostPod("1")
	host.Spec.RestartPolicy = corev1.RestartPolicyNever
	host.Status.Phase = corev1.PodPending
	m, _, _ := newTestMember(t, []*corev1.Pod{host})
	hostClient := m.cfg.HostClient.(*fake.Clientset)
	// What virtual-kubelet's handleProviderError sends for a restartPolicy: Never pod.
	failed := host.DeepCopy()
	failed.ResourceVersion = ""
	failed.Status.Phase, failed.Status.Reason, failed.Status.Message = corev1.PodFailed, providerFailed, "waiting for [secret/late]"
	if _, err := m.HostPodClient(hostClient.CoreV1()).Pods("shop").UpdateStatus(t.Context(), failed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := hostClient.CoreV1().Pods("shop").Get(t.Context(), "web", metav1.GetOptions{})
	if got.Status.Phase != corev1.PodPending || got.Status.Reason != providerFailed {
		t.Errorf("phase %s reason %s; want Pending, %s", got.Status.Phase, got.Status.Reason, providerFailed)
	}
}

func TestHostPodClientForceDeleteWaitsForTheMember(t *testing.T) {
	host := hostPod("1")
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	m, _, _ := newTestMember(t, []*corev1.Pod{host}, memberPod(owner.Labels(), string(host.UID)))
	hostClient := m.cfg.HostClient.(*fake.Clientset)
	pods := m.HostPodClient(hostClient.CoreV1()).Pods("shop")
	force := *metav1.NewDeleteOptions(0)
	if err := pods.Delete(t.Context(), "web", force); !apierrors.IsConflict(err) {
		t.Fatalf("force delete while the member pod exists: err = %v, want Conflict", err)
	}
	if _, err := hostClient.CoreV1().Pods("shop").Get(t.Context(), "web", metav1.GetOptions{}); err != nil {
		t.Errorf("host pod: %v", err)
	}
	// Nor may it delete a host pod that nobody deletes (its "deleted by provider" path: tether-node does that).
	if err := pods.Delete(t.Context(), "web", metav1.DeleteOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("delete of a host pod that is not being deleted: err = %v, want Conflict", err)
	}
	// A deleting host pod whose member pod is gone goes.
	deleting := hostPod("2")
	deleting.Name, deleting.DeletionTimestamp = "gone", &metav1.Time{Time: time.Now()}
	m2, _, _ := newTestMember(t, []*corev1.Pod{deleting})
	client2 := m2.cfg.HostClient.(*fake.Clientset)
	if err := m2.HostPodClient(client2.CoreV1()).Pods("shop").Delete(t.Context(), "gone", force); err != nil {
		t.Errorf("force delete of a deleting pod without member pod: %v", err)
	}
}

func TestCopyingPodLister(t *testing.T) {
	host := hostPod("1")
	m, _, _ := newTestMember(t, []*corev1.Pod{host})
	l := CopyingPodLister(m.cfg.HostPods)
	p, err := l.Pods("shop").Get("web")
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodFailed
	all, _ := l.List(labels.Everything())
	all[0].Labels = map[string]string{"changed": "yes"}
	orig, _ := m.cfg.HostPods.Pods("shop").Get("web")
	if orig.Status.Phase == corev1.PodFailed || orig.Labels["changed"] == "yes" {
		t.Error("a change to a listed pod reached the cache")
	}
}

var m1Owner = api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}

func TestStatusDelayObservedOncePerWrite(t *testing.T) {
	host := hostPod("1")
	host.Status.Phase = corev1.PodPending
	mp := memberPod(m1Owner.Labels(), string(host.UID))
	mp.Spec.NodeName = "m1-node-0"
	mp.Status.Phase = corev1.PodRunning
	m, _, _ := newTestMember(t, []*corev1.Pod{host})
	var observed []float64
	m.cfg.StatusDelay = prometheus.ObserverFunc(func(v float64) { observed = append(observed, v) })
	var pushed []*corev1.Pod
	m.mu.Lock()
	m.notifyPod = func(p *corev1.Pod) { pushed = append(pushed, p) }
	m.mu.Unlock()
	m.onMemberPod(nil, mp)
	m.onMemberPod(mp, mp) // the same status again before the write: the delay counts from the first
	if len(pushed) != 2 {
		t.Fatalf("pushed %d statuses, want 2", len(pushed))
	}
	pods := m.HostPodClient(m.cfg.HostClient.CoreV1()).Pods("shop")
	for _, p := range pushed {
		if _, err := pods.UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(observed) != 1 || observed[0] < 0 {
		t.Errorf("observed %v, want one delay (the second write found nothing pending)", observed)
	}
}
