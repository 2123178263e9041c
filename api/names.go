package api

import (
	corev1 "k8s.io/api/core/v1"
)

// Defaults shared by every command.
const (
	// DefaultNamespace is Tether's namespace in the host: member Secrets, certificates, leases.
	DefaultNamespace = "tether-system"
	// DefaultNodePrefix names virtual nodes: <prefix><member>.
	DefaultNodePrefix = "tether-"
)

// Labels and annotations on host objects.
const (
	// LabelMember names the member: on its virtual node (value: the member), and on a host Secret in Tether's
	// namespace that registers a member (value: the member, or empty for the Secret's name).
	LabelMember = "tether.io/member"
	// AnnotationScheduling on a host pod holds its parked scheduling fields (JSON, see Scheduling). The webhook
	// writes it; tether-node restores the fields on the member pod.
	AnnotationScheduling = "tether.io/scheduling"
	// AnnotationFragments on a virtual node is the fragmentation digest (JSON, see Fragments), written by
	// tether-node.
	AnnotationFragments = "tether.io/fragments"
	// AnnotationKubeletPort on a member Secret gives that member's virtual node a kubelet API port of its own.
	AnnotationKubeletPort = "tether.io/kubelet-port"
	// LabelOffload on a host namespace opts its pods into offloading, with value OffloadEnabled.
	LabelOffload   = "tether.io/offload"
	OffloadEnabled = "enabled"
	// DefaultOffloadSelector is the webhook's default namespace selector.
	DefaultOffloadSelector = LabelOffload + "=" + OffloadEnabled
)

// Ownership labels and annotation of every object Tether creates, in members and in the host.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedByTether  = "tether"
	LabelHostCluster = "tether.io/host-cluster"
	LabelNode        = "tether.io/node"
	// AnnotationHostUID on a member object is the UID of the host object it copies.
	AnnotationHostUID = "tether.io/host-uid"
	// EndpointSliceManagedBy is the endpointslice.kubernetes.io/managed-by value of the EndpointSlices Tether
	// mirrors into members, so that the member's own EndpointSlice controllers leave them alone.
	EndpointSliceManagedBy = "endpointslice-mirror.tether.io"
	// EventReportingController is the reportingController of the host events tether-node relays from members.
	EventReportingController = "tether.io/tether-node"
)

// The virtual node.
const (
	// TaintKey=TaintValue:NoSchedule is the virtual node's taint: only pods that tolerate it land on a member.
	TaintKey   = "virtual-kubelet.io/provider"
	TaintValue = "tether"
	// NodeTypeKey=NodeType and LabelRole=RoleAgent mark virtual-kubelet nodes, as other virtual-kubelet
	// providers do.
	NodeTypeKey = "type"
	NodeType    = "virtual-kubelet"
	LabelRole   = "kubernetes.io/role"
	RoleAgent   = "agent"
)

// TaintNoUsableNodes (NoSchedule) is on a virtual node while its member answers but has no node that can take a
// pod: no new pods go there, and the node stays Ready so that nothing running is evicted.
const TaintNoUsableNodes = "tether.io/no-usable-nodes"

// NoUsableNodesTaint is that taint.
func NoUsableNodesTaint() corev1.Taint {
	return corev1.Taint{Key: TaintNoUsableNodes, Effect: corev1.TaintEffectNoSchedule}
}

// Reasons of the virtual node's Ready condition.
const (
	// ReasonMemberReady: the member answers and has a usable node.
	ReasonMemberReady = "MemberReady"
	// ReasonMemberUnreachable: the member's apiserver does not answer (Ready=False).
	ReasonMemberUnreachable = "MemberUnreachable"
	// ReasonNoUsableNodes: the member answers but no node of it can take pods (Ready=True, and the node is
	// tainted TaintNoUsableNodes).
	ReasonNoUsableNodes = "NoUsableNodes"
	// ReasonMemberSyncing: tether-node has not read the member yet (Ready=Unknown).
	ReasonMemberSyncing = "MemberSyncing"
)

// NodeName is the virtual node of member under prefix.
func NodeName(prefix, member string) string { return prefix + member }

// NodeLabels are the labels of member's virtual node nodeName.
func NodeLabels(member, nodeName string) map[string]string {
	return map[string]string{
		NodeTypeKey:          NodeType,
		LabelRole:            RoleAgent,
		corev1.LabelHostname: nodeName,
		LabelMember:          member,
	}
}

// Taint is the virtual node's taint.
func Taint() corev1.Taint {
	return corev1.Taint{Key: TaintKey, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule}
}

// Tolerations are what an offloaded pod needs on the host: the virtual-node taint, and the not-ready and
// unreachable taints for tolerationSeconds, so that a short member outage evicts nothing.
func Tolerations(tolerationSeconds int64) []corev1.Toleration {
	secs := tolerationSeconds
	return []corev1.Toleration{
		{Key: TaintKey, Operator: corev1.TolerationOpEqual, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
	}
}

// IsVirtualNodeToleration reports whether t tolerates the virtual-node taint (and only because of it: a
// toleration of every taint is not one).
func IsVirtualNodeToleration(t corev1.Toleration) bool {
	return t.Key == TaintKey
}
