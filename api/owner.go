package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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

// ManagedLabels are the labels of an object Tether creates in the host (a certificate Secret, the webhook
// configuration): managed-by, and nothing that names a member.
func ManagedLabels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByTether}
}
