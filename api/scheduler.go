package api

import (
	corev1 "k8s.io/api/core/v1"
)

// The scheduler plugin (the scheduler/ module).
const (
	// SchedulerName is the schedulerName of tether-scheduler's profile; tether-webhook sets it on offloaded pods
	// when told to (--scheduler-name).
	SchedulerName = "tether-scheduler"
	// SchedulerPlugin is the name of the Filter/Score plugin in a KubeSchedulerConfiguration. Its args are
	// nodePrefix and keepLabelKeys, with the meaning of the flags FlagNodePrefix and FlagKeepLabelKeys.
	SchedulerPlugin = "MemberFit"
)

// MemberOfNode names the member a host node stands for: a virtual node is labelled NodeTypeKey=NodeType and
// LabelMember=<member>, and named NodeName(prefix, member). ok is false for every other node.
func MemberOfNode(n *corev1.Node, prefix string) (member string, ok bool) {
	if n == nil || n.Labels[NodeTypeKey] != NodeType {
		return "", false
	}
	member = n.Labels[LabelMember]
	if member == "" || n.Name != NodeName(prefix, member) {
		return "", false
	}
	return member, true
}
