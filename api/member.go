package api

import (
	corev1 "k8s.io/api/core/v1"
)

// The member Secret: a Secret in Tether's host namespace labelled LabelMember registers a member cluster.
const (
	// MemberSecretKubeconfig is the key of the member's kubeconfig. It must be self-contained: server, CA and a
	// token or client certificate inline; exec and auth-provider plugins, file paths and proxies are refused.
	MemberSecretKubeconfig = "kubeconfig"
	// MemberSelector selects member Secrets.
	MemberSelector = LabelMember
)

// MemberOfSecret names the member a member Secret registers: its LabelMember value, or the Secret's name when the
// value is empty.
func MemberOfSecret(s *corev1.Secret) string {
	if v := s.Labels[LabelMember]; v != "" {
		return v
	}
	return s.Name
}
