package api

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What `tetherctl join` creates in a member cluster: the identity tether-node uses there, and nothing else.
const (
	// MemberNamespace is Tether's namespace in a member: it holds tether-node's ServiceAccount and its token. No
	// pod of Tether's ever runs there (tether-node denies it by default).
	MemberNamespace = DefaultNamespace
	// MemberIdentity names tether-node's ServiceAccount in MemberNamespace, and its ClusterRole and
	// ClusterRoleBinding.
	MemberIdentity = "tether-node"
	// MemberTokenSecret is the long-lived token Secret (type kubernetes.io/service-account-token) of
	// MemberIdentity; to rotate the token, delete it and join again.
	MemberTokenSecret = "tether-node-token"
	// LabelJoinedBy on the objects of the member identity names the host cluster that joined the member (its
	// cluster id), so that one host never takes over or removes another host's identity.
	LabelJoinedBy = "tether.io/joined-by"
	// JoinFieldManager is the field manager of tetherctl's server-side applies, in members and in the host.
	JoinFieldManager = "tetherctl"
	// MemberSecretPrefix names the member Secrets tetherctl writes in the host: <prefix><member>.
	MemberSecretPrefix = "member-"
)

// MemberSecretName is the host Secret that `tetherctl join` writes for member.
func MemberSecretName(member string) string { return MemberSecretPrefix + member }

// JoinLabels are the labels of the member identity's objects: managed by Tether, joined by host cluster clusterID.
func JoinLabels(clusterID string) map[string]string {
	l := ManagedLabels()
	l[LabelJoinedBy] = clusterID
	return l
}

// JoinedBy reports whether obj belongs to the member identity that host cluster clusterID created.
func JoinedBy(obj metav1.Object, clusterID string) bool {
	l := obj.GetLabels()
	return l[LabelManagedBy] == ManagedByTether && l[LabelJoinedBy] == clusterID
}

// MemberRules are the rules of tether-node's ClusterRole in a member: what its virtual node, the kubelet API
// relay and its controllers do there, and no more. Member objects are read through informers on the whole member
// (pods, nodes, namespaces) or on Tether's ownership labels (copies); RBAC cannot narrow a list by label, so the
// copy kinds, Secrets among them, are readable cluster-wide. No wildcard, and no escalate, bind or impersonate.
func MemberRules() []rbacv1.PolicyRule {
	readWrite := []string{"get", "list", "watch", "create", "update", "delete"}
	return []rbacv1.PolicyRule{
		// The member's pods: the capacity of the node (all pods), the copies of host pods (create, delete), their
		// metadata kept in step (patch).
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
		// Ephemeral containers (kubectl debug) and in-place resizes of host pods, carried to their copies.
		{APIGroups: []string{""}, Resources: []string{"pods/ephemeralcontainers", "pods/resize"}, Verbs: []string{"update"}},
		// The kubelet API relay: logs, exec, attach (WebSocket GET, SPDY POST) and port-forward (SPDY POST).
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach"}, Verbs: []string{"get", "create"}},
		{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create"}},
		// The virtual node's capacity, conditions and node summary: read only.
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch"}},
		// The namespaces of host pods, created on demand and deleted once nothing of Tether's is left in them.
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch", "create", "delete"}},
		// The copies a pod needs, and the claims of Tether's StorageClass. ConfigMaps are patched too: the records
		// of the Secret copies (Owner.SecretRecordName) take one entry at a time.
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: append(readWrite, "patch")},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts", "services", "persistentvolumeclaims"}, Verbs: readWrite},
		// Secrets are written, never read: not its copies (it knows them from its records) and not anyone
		// else's. Updates and deletes name the copy's UID as a precondition. No patch: a patch answers with the
		// whole object, which would be a read.
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "update", "delete"}},
		// The object count quota of each namespace Tether creates (ObjectCountQuota): it counts the Secrets there.
		{APIGroups: []string{""}, Resources: []string{"resourcequotas"}, Verbs: []string{"get", "create", "delete"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readWrite},
		// The member's pod events, relayed to the host pods.
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list", "watch"}},
		// Pod usage for the kubelet API's /stats/summary and /metrics/resource (metrics-server, where installed).
		{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		// Health probe and the member's version on the node.
		{NonResourceURLs: []string{"/readyz", "/version"}, Verbs: []string{"get"}},
	}
}
