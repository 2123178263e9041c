// Package forge turns host objects into the member objects Tether creates, and member state back into host
// state, as pure functions: no clients, no caches, every rule a table test. The names here are contracts that
// the webhook, the scheduler plugin, the descheduler and users rely on.
package forge

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names shared by every part of Tether.
const (
	// Ownership labels and annotation of every object Tether creates in a member.
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedByTether   = "tether"
	LabelHostCluster  = "tether.io/host-cluster"
	LabelNode         = "tether.io/node"
	AnnotationHostUID = "tether.io/host-uid"

	// LabelMember names the member on its virtual node.
	LabelMember = "tether.io/member"
	// AnnotationScheduling holds a pod's parked scheduling fields (JSON, see Scheduling).
	AnnotationScheduling = "tether.io/scheduling"
	// AnnotationFragments is the fragmentation digest on a virtual node (JSON, see Fragments).
	AnnotationFragments = "tether.io/fragments"

	// The virtual node's taint: only pods that tolerate it land on a member.
	TaintKey    = "virtual-kubelet.io/provider"
	TaintValue  = "tether"
	NodeTypeKey = "type"
	NodeType    = "virtual-kubelet"
)

// DefaultHostLevelKeys are label keys that describe virtual nodes, not member nodes: terms on them are kept on the
// host pod and removed from the member pod. kubernetes.io/hostname counts only when it names a virtual node.
var DefaultHostLevelKeys = []string{LabelMember, NodeTypeKey, "kubernetes.io/hostname"}

const hostnameKey = "kubernetes.io/hostname"

// Owner says who Tether is in a member: the host cluster and the virtual node that own a copy.
type Owner struct {
	ClusterID string
	NodeName  string
}

// Labels are the ownership labels of a member object created for the virtual node.
func (o Owner) Labels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByTether, LabelHostCluster: o.ClusterID, LabelNode: o.NodeName}
}

// Selector selects the member objects of this virtual node.
func (o Owner) Selector() string {
	return LabelManagedBy + "=" + ManagedByTether + "," + LabelHostCluster + "=" + o.ClusterID + "," + LabelNode + "=" + o.NodeName
}

// OwnsForCluster reports whether obj was created by Tether for this host cluster (any virtual node).
func (o Owner) OwnsForCluster(obj metav1.Object) bool {
	l := obj.GetLabels()
	return l[LabelManagedBy] == ManagedByTether && l[LabelHostCluster] == o.ClusterID
}

// Owns reports whether obj was created by Tether for this host cluster and this virtual node.
func (o Owner) Owns(obj metav1.Object) bool {
	return o.OwnsForCluster(obj) && obj.GetLabels()[LabelNode] == o.NodeName
}

// HostLevel decides which node-selection terms speak of virtual nodes.
type HostLevel struct {
	// Keys are host-level label keys (DefaultHostLevelKeys plus any the operator adds).
	Keys []string
	// VirtualNodePrefix tells virtual node names apart: kubernetes.io/hostname is host-level only for them.
	VirtualNodePrefix string
}

// DefaultHostLevel is the default set with virtual nodes named tether-<member>.
func DefaultHostLevel() HostLevel {
	return HostLevel{Keys: DefaultHostLevelKeys, VirtualNodePrefix: "tether-"}
}

// IsHostLevel reports whether a requirement on key with values concerns virtual nodes only.
func (h HostLevel) IsHostLevel(key string, values []string) bool {
	if !slices.Contains(h.Keys, key) {
		return false
	}
	if key != hostnameKey {
		return true
	}
	if len(values) == 0 {
		return false
	}
	for _, v := range values {
		if !strings.HasPrefix(v, h.VirtualNodePrefix) {
			return false
		}
	}
	return true
}

// IsHostLevelTopologyKey reports whether a topology key groups nodes by member (a pod (anti-)affinity or spread on
// it means something on the host) rather than inside one.
func (h HostLevel) IsHostLevelTopologyKey(key string) bool {
	return key != hostnameKey && slices.Contains(h.Keys, key)
}
