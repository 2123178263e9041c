package memberunschedulable

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	deschedulerapi "sigs.k8s.io/descheduler/pkg/api"
)

// MemberUnschedulableArgs are the plugin's arguments in the descheduler policy (pluginConfig args).
type MemberUnschedulableArgs struct { //nolint:revive // upstream naming of plugin args (<Plugin>Args)
	metav1.TypeMeta `json:",inline"`

	// UnschedulableFor is how long the member scheduler must have left the pod unschedulable (its PodScheduled=False
	// condition with reason Unschedulable, brought to the host pod by tether-node) before the pod is evicted.
	// Default 30s.
	UnschedulableFor *metav1.Duration `json:"unschedulableFor,omitempty"`
	// AvoidFor is how long the pods that the evicted pod's controller creates next avoid its member. Default 5m.
	AvoidFor *metav1.Duration `json:"avoidFor,omitempty"`
	// EvictPodsWithoutController also evicts pods that no controller recreates (nothing replaces them, and the
	// avoid record needs a controller). The DefaultEvictor protects such pods unless told otherwise. Default false.
	EvictPodsWithoutController bool `json:"evictPodsWithoutController,omitempty"`
	// AvoidNamespace and AvoidConfigMap name the ConfigMap of the avoid record (tether-webhook's --namespace and
	// --avoid-configmap must name the same one). Defaults: tether-system, tether-avoid.
	AvoidNamespace string `json:"avoidNamespace,omitempty"`
	AvoidConfigMap string `json:"avoidConfigMap,omitempty"`
	// Namespaces limits the plugin to (Include) or keeps it away from (Exclude) namespaces.
	Namespaces *deschedulerapi.Namespaces `json:"namespaces,omitempty"`
	// LabelSelector limits the plugin to matching pods.
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// DeepCopyInto copies in into out.
func (in *MemberUnschedulableArgs) DeepCopyInto(out *MemberUnschedulableArgs) {
	*out = *in
	if in.UnschedulableFor != nil {
		d := *in.UnschedulableFor
		out.UnschedulableFor = &d
	}
	if in.AvoidFor != nil {
		d := *in.AvoidFor
		out.AvoidFor = &d
	}
	if in.Namespaces != nil {
		out.Namespaces = in.Namespaces.DeepCopy()
	}
	if in.LabelSelector != nil {
		out.LabelSelector = in.LabelSelector.DeepCopy()
	}
}

// DeepCopy returns a copy of in.
func (in *MemberUnschedulableArgs) DeepCopy() *MemberUnschedulableArgs {
	if in == nil {
		return nil
	}
	out := new(MemberUnschedulableArgs)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *MemberUnschedulableArgs) DeepCopyObject() runtime.Object {
	if c := in.DeepCopy(); c != nil {
		return c
	}
	return nil
}
