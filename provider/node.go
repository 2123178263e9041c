package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

// Node is the virtual node as registered at start: labels, taint and a status that says the member is not known
// yet. Spec is written only when the node is created, so a cordon (spec.unschedulable) is never undone.
func (m *Member) Node() *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   m.cfg.NodeName,
			Labels: api.NodeLabels(m.cfg.Member, m.cfg.NodeName),
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{api.Taint()}},
	}
	n.Status = m.nodeStatus(nil, api.ReasonMemberSyncing, "waiting for the member's caches", forge.Capacity{})
	return n
}

// Ping reports Tether's own liveness: the lease says tether-node runs; whether the member is reachable is the
// Ready condition's business, with its own reason.
func (m *Member) Ping(context.Context) error { return nil }

// NotifyNodeStatus registers the node controller's status callback.
func (m *Member) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	m.mu.Lock()
	m.notifyNode = cb
	m.mu.Unlock()
}

// RunNode probes the member and recomputes the node's status (at most once per CapacityDebounce) until ctx ends.
func (m *Member) RunNode(ctx context.Context) {
	probe := time.NewTicker(m.cfg.HealthInterval)
	defer probe.Stop()
	m.mu.Lock()
	last := m.initial // the node controller publishes it itself
	m.mu.Unlock()
	if last == nil {
		m.probe(ctx)
	}
	var tainted *bool // as last written; nil: not known yet
	for {
		node := m.currentNode()
		if want := noUsableNodes(node); tainted == nil || *tainted != want {
			if err := m.syncTaint(ctx, want); err != nil {
				log.G(ctx).WithError(err).WithField("node", m.cfg.NodeName).Warn("taint of a member without usable nodes; retrying")
				tainted = nil
			} else {
				tainted = &want
			}
		}
		if last != nil {
			keepTransitionTimes(last, node)
		}
		if last == nil || !sameNode(last, node) {
			m.mu.Lock()
			cb := m.notifyNode
			m.mu.Unlock()
			if cb != nil {
				cb(node)
				last = node
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
			m.probe(ctx)
		case <-m.recompute:
			// Debounce: a burst of pod events costs one recomputation.
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.cfg.CapacityDebounce):
			}
		}
	}
}

// probe asks the member's /readyz, with a timeout.
func (m *Member) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.HealthTimeout)
	defer cancel()
	err := m.cfg.Probe(ctx)
	was := m.reachable.Load()
	if err != nil {
		msg := err.Error()
		m.health.Store(&msg)
		m.reachable.Store(false)
		if was {
			log.G(ctx).WithField("member", m.cfg.Member).WithError(err).Warn("member unreachable")
		}
		return
	}
	m.health.Store(nil)
	m.reachable.Store(true)
	if !was || m.version.Load() == nil {
		// Read again on every reconnection: the member may have been upgraded meanwhile.
		if v, err := m.cfg.ServerVersion(ctx); err == nil {
			m.version.Store(&v)
		}
	}
	if !was {
		log.G(ctx).WithField("member", m.cfg.Member).Info("member reachable")
	}
}

// currentNode computes the node from the caches, from scratch.
func (m *Member) currentNode() *corev1.Node {
	n := m.Node()
	var capacity forge.Capacity
	synced := true
	for _, s := range m.synced {
		synced = synced && s()
	}
	reason, msg := api.ReasonMemberSyncing, "waiting for the member's caches"
	if synced {
		nodes, _ := m.nodes.List(labels.Everything()) // listers do not fail
		pods, _ := m.pods.List(labels.Everything())
		capacity = forge.ComputeCapacity(nodes, pods, m.owner)
		reason = api.ReasonMemberReady
		msg = fmt.Sprintf("%d usable member nodes: %s", len(capacity.UsableNodes), strings.Join(capacity.UsableNodes, ", "))
		if len(capacity.UsableNodes) == 0 {
			reason, msg = api.ReasonNoUsableNodes, fmt.Sprintf("none of the member's %d nodes is Ready, schedulable and untainted", len(nodes))
		}
		if capacity.OS != "" {
			n.Labels["kubernetes.io/os"] = capacity.OS
			n.Labels["kubernetes.io/arch"] = capacity.Arch
		}
		n.Annotations = map[string]string{api.AnnotationFragments: capacity.Fragments.Encode(),
			api.AnnotationNodeSummary: forge.ComputeSummary(nodes, pods, time.Now()).Encode()}
	}
	if !m.reachable.Load() {
		reason, msg = api.ReasonMemberUnreachable, "member apiserver does not answer /readyz"
		if e := m.health.Load(); e != nil {
			msg += ": " + *e
		}
	}
	n.Status = m.nodeStatus(capacity.Allocatable, reason, msg, capacity)
	return n
}

func (m *Member) nodeStatus(allocatable corev1.ResourceList, reason, msg string, c forge.Capacity) corev1.NodeStatus {
	ready := corev1.ConditionFalse
	if reason == api.ReasonMemberReady || reason == api.ReasonNoUsableNodes {
		// No usable node is no outage: the node stays Ready (nothing running is evicted) and its taint keeps new
		// pods away (syncTaint).
		ready = corev1.ConditionTrue
	}
	if allocatable == nil {
		allocatable = corev1.ResourceList{}
	}
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    allocatable,
		Allocatable: allocatable,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, ready, reason, msg),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "MemberHasSufficientMemory", "pressure is the member's business"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "MemberHasNoDiskPressure", "pressure is the member's business"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "MemberHasSufficientPID", "pressure is the member's business"),
		},
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: m.cfg.InternalIP}, {Type: corev1.NodeHostName, Address: m.cfg.NodeName}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: m.cfg.KubeletPort}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem:         orDefault(c.OS, "linux"),
			Architecture:            orDefault(c.Arch, "amd64"),
			KubeletVersion:          orDefault(m.memberVersion(), "v0.0.0"),
			OSImage:                 c.OSImage,
			KernelVersion:           c.Kernel,
			ContainerRuntimeVersion: c.Runtime,
		},
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// keepTransitionTimes carries a condition's LastTransitionTime over while its status stays, and the node summary's
// time while its content stays (so that an unchanged member is an unchanged node: no write).
func keepTransitionTimes(prev, next *corev1.Node) {
	if p, n := prev.Annotations[api.AnnotationNodeSummary], next.Annotations[api.AnnotationNodeSummary]; p != "" && n != "" && p != n {
		ps, perr := api.ParseNodeSummary(p)
		ns, nerr := api.ParseNodeSummary(n)
		if perr == nil && nerr == nil {
			ns.At = ps.At
			if equality.Semantic.DeepEqual(ps, ns) {
				next.Annotations[api.AnnotationNodeSummary] = p
			}
		}
	}
	for i, c := range next.Status.Conditions {
		for _, p := range prev.Status.Conditions {
			if p.Type == c.Type && p.Status == c.Status {
				next.Status.Conditions[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
}

// sameNode compares what the node shows, ignoring heartbeat times (the node controller refreshes those).
func sameNode(a, b *corev1.Node) bool {
	strip := func(n *corev1.Node) *corev1.Node {
		n = n.DeepCopy()
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		return n
	}
	a, b = strip(a), strip(b)
	return equality.Semantic.DeepEqual(a.Status, b.Status) && equality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		equality.Semantic.DeepEqual(a.Annotations, b.Annotations)
}

// memberVersion is the member's Kubernetes version, the virtual node's VERSION ("" until read).
func (m *Member) memberVersion() string {
	if v := m.version.Load(); v != nil {
		return *v
	}
	return ""
}

// noUsableNodes reports whether node says its member answers but has no usable node.
func noUsableNodes(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Reason == api.ReasonNoUsableNodes
		}
	}
	return false
}

// syncTaint puts api.TaintNoUsableNodes on the host node or takes it off, and changes nothing else of its spec
// (a cordon stays). A node not registered yet is an error: the caller tries again.
func (m *Member) syncTaint(ctx context.Context, want bool) error {
	nodes := m.cfg.HostClient.CoreV1().Nodes()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, m.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		has := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == api.TaintNoUsableNodes })
		if has == want {
			return nil
		}
		up := n.DeepCopy()
		if want {
			up.Spec.Taints = append(up.Spec.Taints, api.NoUsableNodesTaint())
		} else {
			up.Spec.Taints = slices.DeleteFunc(up.Spec.Taints, func(t corev1.Taint) bool { return t.Key == api.TaintNoUsableNodes })
		}
		_, err = nodes.Update(ctx, up, metav1.UpdateOptions{})
		return err
	})
}
