// Package memberfit is tether-scheduler's plugin MemberFit. A virtual node passes Filter only when some node of its
// member can take the pod as the member's scheduler would decide it: the pod's requests against the free room of
// the member's nodes, its parked node selector, required node affinity and tolerations against their labels and
// taints. What it knows of member nodes is the node summary tether-node publishes on the virtual node
// (api.AnnotationNodeSummary): no member credentials, no API call per pod. Score prefers the node with the most
// room left after the pod, so that a burst spreads across members. Real nodes are left to the other plugins.
package memberfit
