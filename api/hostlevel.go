package api

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultHostLevelKeys are label keys that describe virtual nodes, not member nodes: terms on them are kept on the
// host pod and removed from the member pod. kubernetes.io/hostname counts only when it names virtual nodes.
var DefaultHostLevelKeys = []string{LabelMember, NodeTypeKey, corev1.LabelHostname}

// HostLevel decides which node-selection terms speak of virtual nodes. The webhook uses it to park what does not,
// tether-node to drop what does from pods that never passed the webhook: one rule for both.
type HostLevel struct {
	// Keys are host-level label keys (DefaultHostLevelKeys plus any the operator adds with --keep-label-keys).
	Keys []string
	// VirtualNodePrefix tells virtual node names apart: kubernetes.io/hostname and metadata.name are host-level
	// only when they name virtual nodes.
	VirtualNodePrefix string
}

// DefaultHostLevel is the default set with virtual nodes named DefaultNodePrefix<member>.
func DefaultHostLevel() HostLevel {
	return NewHostLevel(DefaultNodePrefix, nil)
}

// NewHostLevel is the default keys plus extra, for virtual nodes named prefix<member>.
func NewHostLevel(prefix string, extra []string) HostLevel {
	return HostLevel{Keys: slices.Concat(DefaultHostLevelKeys, extra), VirtualNodePrefix: prefix}
}

// IsHostLevel reports whether a label requirement on key with values concerns virtual nodes only.
func (h HostLevel) IsHostLevel(key string, values []string) bool {
	if !slices.Contains(h.Keys, key) {
		return false
	}
	if key != corev1.LabelHostname {
		return true
	}
	return h.namesVirtualNodes(values)
}

// IsHostLevelExpression reports whether a node selector term's matchExpressions entry concerns virtual nodes only.
func (h HostLevel) IsHostLevelExpression(r corev1.NodeSelectorRequirement) bool {
	return h.IsHostLevel(r.Key, r.Values)
}

// IsHostLevelField reports whether a node selector term's matchFields entry concerns virtual nodes only: the one
// field there is, metadata.name, when every value names a virtual node.
func (h HostLevel) IsHostLevelField(r corev1.NodeSelectorRequirement) bool {
	return r.Key == metav1.ObjectNameField && h.namesVirtualNodes(r.Values)
}

// IsHostLevelTopologyKey reports whether a topology key groups nodes by member (a pod (anti-)affinity or spread on
// it means something on the host) rather than inside one.
func (h HostLevel) IsHostLevelTopologyKey(key string) bool {
	return key != corev1.LabelHostname && slices.Contains(h.Keys, key)
}

func (h HostLevel) namesVirtualNodes(values []string) bool {
	if len(values) == 0 || h.VirtualNodePrefix == "" {
		return false
	}
	for _, v := range values {
		if !strings.HasPrefix(v, h.VirtualNodePrefix) {
			return false
		}
	}
	return true
}

// Flags that tether-node and tether-webhook share, by contract under the same names.
const (
	FlagNodePrefix    = "node-prefix"
	FlagKeepLabelKeys = "keep-label-keys"
)

// Validate reports every problem of h, named by the flags that set it: a prefix that does not make node names, keys
// that are not label keys.
func (h HostLevel) Validate() error {
	var errs []error
	if h.VirtualNodePrefix != "" && len(validation.IsDNS1123Subdomain(h.VirtualNodePrefix+"x")) > 0 {
		errs = append(errs, fmt.Errorf("--%s %q: node names must be DNS subdomains", FlagNodePrefix, h.VirtualNodePrefix))
	}
	for _, k := range h.Keys {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--%s %q: %s", FlagKeepLabelKeys, k, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}
