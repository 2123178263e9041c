// Package webhook is tether-webhook's admission handler and its pure mutation: a pod's scheduling fields that speak
// of member nodes are parked in the tether.io/scheduling annotation, so that the host scheduler only chooses a
// member (on what describes virtual nodes) and tether-node restores them for the member's scheduler.
package webhook

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/api"
)

// Options shape the mutation.
type Options struct {
	HostLevel api.HostLevel
	// TolerationSeconds is how long an offloaded pod tolerates its virtual node being not-ready or unreachable,
	// so that a short member outage does not evict everything.
	TolerationSeconds int64
	// Avoid, when set, names the members a new pod must keep away from (the descheduler's avoid record for its
	// controller, see AvoidRecord); Mutate adds an api.LabelMember NotIn requirement for them.
	Avoid func(pod *corev1.Pod) []string
	// SchedulerName, when set, is given to offloaded pods that would go to the default scheduler
	// (tether-scheduler's profile: api.SchedulerName); a pod that names another scheduler keeps it.
	SchedulerName string
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{HostLevel: api.DefaultHostLevel(), TolerationSeconds: 300}
}

// Skip tells pods the webhook leaves alone whatever their namespace: DaemonSet pods (one per node, virtual nodes
// included, by design) and mirror pods (a kubelet's own).
func Skip(pod *corev1.Pod) (bool, string) {
	if _, ok := pod.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		return true, "mirror pod"
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "DaemonSet" && o.Controller != nil && *o.Controller {
			return true, "DaemonSet pod"
		}
	}
	return false, ""
}

// Mutate returns the pod as the host should store it. It is idempotent: a pod it returned comes back unchanged.
// A pod that already carries a valid annotation keeps it (its parked fields stay parked); a malformed one is an
// error, and the pod must be denied.
func Mutate(in *corev1.Pod, o Options) (*corev1.Pod, error) {
	pod := in.DeepCopy()
	if raw, ok := pod.Annotations[api.AnnotationScheduling]; ok {
		if _, err := api.ParseScheduling(raw); err != nil {
			return nil, err
		}
	} else {
		// Always written, {} when nothing is parked: it marks the pod as done, so that a second run (reinvocation,
		// or the same pod submitted again) changes nothing.
		enc, err := park(&pod.Spec, o.HostLevel).Encode()
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", api.AnnotationScheduling, err)
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[api.AnnotationScheduling] = enc
	}
	if o.Avoid != nil {
		if members := o.Avoid(pod); len(members) > 0 {
			avoidMembers(&pod.Spec, members)
		}
	}
	if o.SchedulerName != "" && (pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName) {
		pod.Spec.SchedulerName = o.SchedulerName
	}
	for _, t := range api.Tolerations(o.TolerationSeconds) {
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(have corev1.Toleration) bool {
			return have.MatchToleration(&t) && equalSeconds(have.TolerationSeconds, t.TolerationSeconds)
		}) {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, t)
		}
	}
	return pod, nil
}

func equalSeconds(a, b *int64) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// park moves what speaks of member nodes out of spec and returns it.
func park(spec *corev1.PodSpec, h api.HostLevel) *api.Scheduling {
	out := &api.Scheduling{}
	for k, v := range spec.NodeSelector {
		if !h.IsHostLevel(k, []string{v}) {
			if out.NodeSelector == nil {
				out.NodeSelector = map[string]string{}
			}
			out.NodeSelector[k] = v
			delete(spec.NodeSelector, k)
		}
	}
	if len(spec.NodeSelector) == 0 {
		spec.NodeSelector = nil
	}
	// Tolerations all go: the member scheduler judges them against member taints. Mutate adds the ones the host
	// needs.
	out.Tolerations, spec.Tolerations = spec.Tolerations, nil
	var keptSpread []corev1.TopologySpreadConstraint
	for _, c := range spec.TopologySpreadConstraints {
		if h.IsHostLevelTopologyKey(c.TopologyKey) {
			keptSpread = append(keptSpread, c)
		} else {
			out.TopologySpreadConstraints = append(out.TopologySpreadConstraints, c)
		}
	}
	spec.TopologySpreadConstraints = keptSpread
	if a := spec.Affinity; a != nil {
		parkedAffinity := &corev1.Affinity{}
		if a.NodeAffinity != nil {
			a.NodeAffinity, parkedAffinity.NodeAffinity = splitNodeAffinity(a.NodeAffinity, h)
		}
		if a.PodAffinity != nil {
			var req, pref = a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution
			keepReq, parkReq := splitPodTerms(req, h, func(t corev1.PodAffinityTerm) string { return t.TopologyKey })
			keepPref, parkPref := splitPodTerms(pref, h, func(t corev1.WeightedPodAffinityTerm) string { return t.PodAffinityTerm.TopologyKey })
			a.PodAffinity = podAffinity(keepReq, keepPref)
			parkedAffinity.PodAffinity = podAffinity(parkReq, parkPref)
		}
		if a.PodAntiAffinity != nil {
			var req, pref = a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
			keepReq, parkReq := splitPodTerms(req, h, func(t corev1.PodAffinityTerm) string { return t.TopologyKey })
			keepPref, parkPref := splitPodTerms(pref, h, func(t corev1.WeightedPodAffinityTerm) string { return t.PodAffinityTerm.TopologyKey })
			a.PodAntiAffinity = podAntiAffinity(keepReq, keepPref)
			parkedAffinity.PodAntiAffinity = podAntiAffinity(parkReq, parkPref)
		}
		if *a == (corev1.Affinity{}) {
			spec.Affinity = nil
		}
		if *parkedAffinity != (corev1.Affinity{}) {
			out.Affinity = parkedAffinity
		}
	}
	return out
}

// splitNodeAffinity splits every term into its host-level requirements (kept) and the rest (parked). Terms are
// ORed: a term split in two loses the link between its halves, which is the price of choosing the member first.
func splitNodeAffinity(na *corev1.NodeAffinity, h api.HostLevel) (keep, parked *corev1.NodeAffinity) {
	keep, parked = &corev1.NodeAffinity{}, &corev1.NodeAffinity{}
	if req := na.RequiredDuringSchedulingIgnoredDuringExecution; req != nil {
		var k, p []corev1.NodeSelectorTerm
		for _, t := range req.NodeSelectorTerms {
			kt, pt := splitTerm(t, h)
			if !emptyTerm(kt) {
				k = append(k, kt)
			}
			if !emptyTerm(pt) {
				p = append(p, pt)
			}
		}
		if len(k) > 0 {
			keep.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: k}
		}
		if len(p) > 0 {
			parked.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: p}
		}
	}
	for _, pref := range na.PreferredDuringSchedulingIgnoredDuringExecution {
		kt, pt := splitTerm(pref.Preference, h)
		if !emptyTerm(kt) {
			keep.PreferredDuringSchedulingIgnoredDuringExecution = append(keep.PreferredDuringSchedulingIgnoredDuringExecution,
				corev1.PreferredSchedulingTerm{Weight: pref.Weight, Preference: kt})
		}
		if !emptyTerm(pt) {
			parked.PreferredDuringSchedulingIgnoredDuringExecution = append(parked.PreferredDuringSchedulingIgnoredDuringExecution,
				corev1.PreferredSchedulingTerm{Weight: pref.Weight, Preference: pt})
		}
	}
	if keep.RequiredDuringSchedulingIgnoredDuringExecution == nil && len(keep.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		keep = nil
	}
	if parked.RequiredDuringSchedulingIgnoredDuringExecution == nil && len(parked.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		parked = nil
	}
	return keep, parked
}

func splitTerm(t corev1.NodeSelectorTerm, h api.HostLevel) (keep, parked corev1.NodeSelectorTerm) {
	for _, r := range t.MatchExpressions {
		if h.IsHostLevelExpression(r) {
			keep.MatchExpressions = append(keep.MatchExpressions, r)
		} else {
			parked.MatchExpressions = append(parked.MatchExpressions, r)
		}
	}
	for _, r := range t.MatchFields {
		if h.IsHostLevelField(r) {
			keep.MatchFields = append(keep.MatchFields, r)
		} else {
			parked.MatchFields = append(parked.MatchFields, r)
		}
	}
	return keep, parked
}

func emptyTerm(t corev1.NodeSelectorTerm) bool {
	return len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0
}

func splitPodTerms[T any](terms []T, h api.HostLevel, key func(T) string) (keep, parked []T) {
	for _, t := range terms {
		if h.IsHostLevelTopologyKey(key(t)) {
			keep = append(keep, t)
		} else {
			parked = append(parked, t)
		}
	}
	return keep, parked
}

func podAffinity(req []corev1.PodAffinityTerm, pref []corev1.WeightedPodAffinityTerm) *corev1.PodAffinity {
	if len(req) == 0 && len(pref) == 0 {
		return nil
	}
	return &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: req, PreferredDuringSchedulingIgnoredDuringExecution: pref}
}

func podAntiAffinity(req []corev1.PodAffinityTerm, pref []corev1.WeightedPodAffinityTerm) *corev1.PodAntiAffinity {
	if len(req) == 0 && len(pref) == 0 {
		return nil
	}
	return &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: req, PreferredDuringSchedulingIgnoredDuringExecution: pref}
}

// MutateUpdate keeps a pod that passed the webhook as it was admitted: its scheduling fields are immutable anyway,
// and a manifest applied again (kubectl apply) must not bring back what was parked. Tolerations the update adds
// that are neither on the pod nor parked are kept: adding tolerations is the one change Kubernetes allows.
func MutateUpdate(old, in *corev1.Pod) *corev1.Pod {
	raw, ok := old.Annotations[api.AnnotationScheduling]
	if !ok {
		return in
	}
	parkedFields, err := api.ParseScheduling(raw)
	if err != nil {
		return in
	}
	pod := in.DeepCopy()
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[api.AnnotationScheduling] = raw
	pod.Spec.NodeSelector = old.Spec.NodeSelector
	pod.Spec.Affinity = old.Spec.Affinity
	pod.Spec.TopologySpreadConstraints = old.Spec.TopologySpreadConstraints
	tolerations := slices.Clone(old.Spec.Tolerations)
	for _, t := range in.Spec.Tolerations {
		known := func(have corev1.Toleration) bool {
			return have.MatchToleration(&t) && equalSeconds(have.TolerationSeconds, t.TolerationSeconds)
		}
		if !slices.ContainsFunc(tolerations, known) && !slices.ContainsFunc(parkedFields.Tolerations, known) {
			tolerations = append(tolerations, t)
		}
	}
	pod.Spec.Tolerations = tolerations
	return pod
}

// avoidMembers adds "<api.LabelMember> NotIn members" to every required node selector term (a term of its own when
// there is none), so that the host scheduler places the pod on another member. Terms that already exclude every
// one of members are left as they are: a second run changes nothing.
func avoidMembers(spec *corev1.PodSpec, members []string) {
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil || len(na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0 {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		if excludes(terms[i], members) {
			continue
		}
		terms[i].MatchExpressions = append(terms[i].MatchExpressions,
			corev1.NodeSelectorRequirement{Key: api.LabelMember, Operator: corev1.NodeSelectorOpNotIn, Values: slices.Clone(members)})
	}
}

// excludes reports whether term has an api.LabelMember NotIn requirement for every one of members.
func excludes(term corev1.NodeSelectorTerm, members []string) bool {
	for _, m := range members {
		if !slices.ContainsFunc(term.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
			return r.Key == api.LabelMember && r.Operator == corev1.NodeSelectorOpNotIn && slices.Contains(r.Values, m)
		}) {
			return false
		}
	}
	return true
}
