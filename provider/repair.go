package provider

import (
	"context"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/tetherkube/tether/api"
)

// The repair pass does not rely on virtual-kubelet's queues, which forget a key after 20 failed syncs and never
// look at it again: from the caches alone, every RepairInterval, it finds host pods bound to this node without a
// member copy, member copies whose host pod is gone or is another pod now, and deleting host pods whose copy
// remains, and puts each right. Its own queue retries with backoff and never gives up. Member pod deletions
// enqueue their key at once, so a pod recreated under the same name (a StatefulSet's) is created as soon as the
// stale copy is gone.

// repairGrace leaves a newly bound host pod to the pod controller for a while before the periodic pass takes it;
// deletedMemory is how long a member pod deleted by Tether is not deleted again while the cache still shows it.
const (
	repairGrace   = 15 * time.Second
	deletedMemory = time.Minute
)

func (m *Member) deletedLately(uid types.UID) bool {
	at, ok := m.deleted.Load(uid)
	return ok && time.Since(at.(time.Time)) < deletedMemory
}

func (m *Member) newRepairQueue() workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "tether-repair-" + m.cfg.NodeName})
}

// RunRepair runs the repair pass until ctx ends. The member's caches must have synced.
func (m *Member) RunRepair(ctx context.Context, interval time.Duration, workers int) {
	defer m.repairQueue.ShutDown()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for m.repairNext(ctx) {
			}
		})
	}
	defer wg.Wait()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.enqueueRepairs(time.Now())
		select {
		case <-ctx.Done():
			m.repairQueue.ShutDown()
			return
		case <-t.C:
		}
	}
}

// enqueueRepairs queues every key whose host and member state disagree.
func (m *Member) enqueueRepairs(now time.Time) {
	hosts, err := m.cfg.HostPods.List(labels.Everything())
	if err != nil {
		return
	}
	for _, h := range hosts {
		if h.Spec.NodeName != m.cfg.NodeName {
			continue
		}
		hasCopy := m.HasCopyOf(h)
		switch {
		case h.DeletionTimestamp != nil:
			m.repairQueue.Add(h.Namespace + "/" + h.Name)
		case !hasCopy && !terminal(h) && now.Sub(h.CreationTimestamp.Time) > repairGrace:
			m.repairQueue.Add(h.Namespace + "/" + h.Name)
		}
	}
	m.deleted.Range(func(uid, at any) bool {
		if now.Sub(at.(time.Time)) > deletedMemory {
			m.deleted.Delete(uid)
		}
		return true
	})
	owned, err := m.OwnedPods()
	if err != nil {
		return
	}
	for _, p := range owned {
		if m.deletedLately(p.UID) {
			continue
		}
		h, err := m.cfg.HostPods.Pods(p.Namespace).Get(p.Name)
		if apierrors.IsNotFound(err) || (err == nil && (h.Spec.NodeName != m.cfg.NodeName || string(h.UID) != p.Annotations[api.AnnotationHostUID])) {
			m.repairQueue.Add(p.Namespace + "/" + p.Name)
		}
	}
}

func (m *Member) enqueueRepair(namespace, name string) {
	if m.repairQueue != nil {
		m.repairQueue.Add(namespace + "/" + name)
	}
}

func (m *Member) repairNext(ctx context.Context) bool {
	key, quit := m.repairQueue.Get()
	if quit {
		return false
	}
	defer m.repairQueue.Done(key)
	rctx, cancel := m.withRequestTimeout(ctx)
	defer cancel()
	if err := m.repair(rctx, key); err != nil {
		if m.cfg.OnSyncError != nil {
			m.cfg.OnSyncError(err)
		}
		log.G(ctx).WithField("pod", key).WithError(err).Debug("repair; retrying")
		m.repairQueue.AddRateLimited(key)
		return true
	}
	m.repairQueue.Forget(key)
	return true
}

// repair puts one pod name right, from the caches: the host pod of that name on this node (if any) and the member
// pod of that name (if any).
func (m *Member) repair(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	host, err := m.cfg.HostPods.Pods(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		host = nil
	case err != nil:
		return err
	case host.Spec.NodeName != m.cfg.NodeName:
		host = nil
	}
	member, err := m.pods.Pods(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		member = nil
	case err != nil:
		return err
	}
	owned := member != nil && m.owner.Owns(member)
	isCopy := owned && host != nil && member.Annotations[api.AnnotationHostUID] == string(host.UID)
	switch {
	case owned && !isCopy:
		// A copy whose host pod is gone, or of an earlier pod of that name: it goes (UID-checked). Its deletion
		// event brings the key back for the host pod, if there is one.
		if member.DeletionTimestamp == nil && !m.deletedLately(member.UID) {
			return m.deleteMemberPod(ctx, member, nil)
		}
		return nil
	case host == nil:
		return nil
	case host.DeletionTimestamp != nil:
		if isCopy {
			if member.DeletionTimestamp == nil {
				return m.deleteMemberPod(ctx, member, host.DeletionGracePeriodSeconds)
			}
			return nil // going: its deletion event finishes the host pod
		}
		m.finishHostDeletion(ctx, host)
		return nil
	case isCopy && member.DeletionTimestamp != nil && !m.deletedLately(member.UID):
		// Someone else deletes the copy in the member: the host pod goes too, so that its controller replaces it.
		m.hostPodLost(host, "is being deleted in the member")
		return nil
	case isCopy, member != nil, terminal(host):
		// In step; or a member pod that is not Tether's (a conflict CreatePod reports); or a finished pod.
		return nil
	case host.Status.Phase == corev1.PodRunning:
		// It ran, and its member pod is gone: as when someone deletes it in the member.
		m.hostPodLost(host, "is gone")
		return nil
	default:
		return m.CreatePod(ctx, host)
	}
}
