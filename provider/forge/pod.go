package forge

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
)

// PodOptions are the inputs of Pod besides the host pod.
type PodOptions struct {
	Owner     api.Owner
	HostLevel api.HostLevel
}

// serviceAccountVolumePrefix names the projected token volume the host's ServiceAccount admission adds; the member
// adds its own for the pod's ServiceAccount.
const serviceAccountVolumePrefix = "kube-api-access-"

// Pod returns the member pod for a host pod. The error is an invalid AnnotationScheduling: the pod must not be
// created then.
func Pod(host *corev1.Pod, opts PodOptions) (*corev1.Pod, error) {
	labels, annotations := PodMeta(host, opts.Owner)
	member := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        host.Name,
			Namespace:   host.Namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: *host.Spec.DeepCopy(),
	}
	spec := &member.Spec
	spec.NodeName = ""
	// The host's scheduler chose the member; the member's default scheduler chooses the node.
	spec.SchedulerName = ""
	// Priority classes are cluster objects the member may not have; the system ones exist everywhere.
	if !strings.HasPrefix(spec.PriorityClassName, "system-") {
		spec.PriorityClassName = ""
	}
	spec.Priority = nil
	spec.PreemptionPolicy = nil
	// Readiness gates are set by host controllers; the host pod keeps them (see PodStatus).
	spec.ReadinessGates = nil
	spec.EphemeralContainers = nil
	spec.Tolerations = slices.DeleteFunc(spec.Tolerations, api.IsVirtualNodeToleration)
	if len(spec.Tolerations) == 0 {
		spec.Tolerations = nil
	}
	dropServiceAccountToken(spec)

	if raw, ok := host.Annotations[api.AnnotationScheduling]; ok {
		parked, err := api.ParseScheduling(raw)
		if err != nil {
			return nil, err
		}
		restoreScheduling(spec, parked)
	} else {
		dropHostLevelTerms(spec, opts.HostLevel)
	}
	return member, nil
}

// PodMeta is the member pod's labels and annotations for a host pod: the host's labels with Tether's ownership
// labels over them, and the host's annotations without the parked scheduling fields, with the host pod's UID.
func PodMeta(host *corev1.Pod, owner api.Owner) (labels, annotations map[string]string) {
	labels = maps.Clone(host.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, owner.Labels())
	annotations = maps.Clone(host.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	delete(annotations, api.AnnotationScheduling)
	annotations[api.AnnotationHostUID] = string(host.UID)
	return labels, annotations
}

// PodMetaPatch is the JSON merge patch that brings a member pod's labels and annotations to want: every wanted
// key set, every label the member pod has beyond them removed, and of its annotations only those in dropped (keys
// the host pod had and lost) removed, since member components annotate pods too. The patch carries the member
// pod's UID, so that it applies to that pod only. nil: nothing to change.
func PodMetaPatch(member *corev1.Pod, wantLabels, wantAnnotations map[string]string, dropped []string) []byte {
	labels := map[string]any{}
	for k, v := range wantLabels {
		if have, ok := member.Labels[k]; !ok || have != v {
			labels[k] = v
		}
	}
	for k := range member.Labels {
		if _, ok := wantLabels[k]; !ok {
			labels[k] = nil
		}
	}
	annotations := map[string]any{}
	for k, v := range wantAnnotations {
		if have, ok := member.Annotations[k]; !ok || have != v {
			annotations[k] = v
		}
	}
	for _, k := range dropped {
		if _, want := wantAnnotations[k]; !want && k != api.AnnotationHostUID {
			if _, ok := member.Annotations[k]; ok {
				annotations[k] = nil
			}
		}
	}
	if len(labels) == 0 && len(annotations) == 0 {
		return nil
	}
	meta := map[string]any{"uid": string(member.UID)}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	b, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil // maps of strings always marshal
	}
	return b
}

// dropServiceAccountToken removes the host's projected ServiceAccount token volume and its mounts.
func dropServiceAccountToken(spec *corev1.PodSpec) {
	var dropped []string
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool {
		if strings.HasPrefix(v.Name, serviceAccountVolumePrefix) && v.Projected != nil && slices.ContainsFunc(v.Projected.Sources,
			func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil }) {
			dropped = append(dropped, v.Name)
			return true
		}
		return false
	})
	if len(dropped) == 0 {
		return
	}
	unmount := func(cs []corev1.Container) {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool {
				return slices.Contains(dropped, m.Name)
			})
		}
	}
	unmount(spec.InitContainers)
	unmount(spec.Containers)
}

// restoreScheduling puts the parked fields back. What stayed on the host pod speaks only of virtual nodes, so the
// parked fields replace it, except tolerations, which add up (the virtual-node one is already gone).
func restoreScheduling(spec *corev1.PodSpec, parked *api.Scheduling) {
	spec.NodeSelector = maps.Clone(parked.NodeSelector)
	spec.Affinity = parked.Affinity.DeepCopy()
	spec.TopologySpreadConstraints = slices.Clone(parked.TopologySpreadConstraints)
	for _, t := range parked.Tolerations {
		if !slices.ContainsFunc(spec.Tolerations, func(have corev1.Toleration) bool { return have.MatchToleration(&t) }) {
			spec.Tolerations = append(spec.Tolerations, t)
		}
	}
}

// dropHostLevelTerms removes, from a pod that did not pass the webhook, node-selection terms that no member node
// can satisfy because they speak of virtual nodes; the host scheduler already honoured them.
func dropHostLevelTerms(spec *corev1.PodSpec, h api.HostLevel) {
	for k, v := range spec.NodeSelector {
		if h.IsHostLevel(k, []string{v}) {
			delete(spec.NodeSelector, k)
		}
	}
	if len(spec.NodeSelector) == 0 {
		spec.NodeSelector = nil
	}
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil {
		return
	}
	na := spec.Affinity.NodeAffinity
	if req := na.RequiredDuringSchedulingIgnoredDuringExecution; req != nil {
		// Terms are ORed: a term left empty after the cut was satisfied by the host's choice alone, so the
		// whole requirement is met and goes.
		var terms []corev1.NodeSelectorTerm
		satisfied := false
		for _, t := range req.NodeSelectorTerms {
			t, emptied := cutTerm(t, h)
			if emptied {
				satisfied = true
				break
			}
			terms = append(terms, t)
		}
		if satisfied || len(terms) == 0 {
			na.RequiredDuringSchedulingIgnoredDuringExecution = nil
		} else {
			req.NodeSelectorTerms = terms
		}
	}
	var prefs []corev1.PreferredSchedulingTerm
	for _, p := range na.PreferredDuringSchedulingIgnoredDuringExecution {
		if t, emptied := cutTerm(p.Preference, h); !emptied {
			p.Preference = t
			prefs = append(prefs, p)
		}
	}
	na.PreferredDuringSchedulingIgnoredDuringExecution = prefs
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil && len(prefs) == 0 {
		spec.Affinity.NodeAffinity = nil
	}
	if *spec.Affinity == (corev1.Affinity{}) {
		spec.Affinity = nil
	}
}

// cutTerm removes host-level requirements from a term; emptied reports a term that had some and has none left.
func cutTerm(t corev1.NodeSelectorTerm, h api.HostLevel) (corev1.NodeSelectorTerm, bool) {
	before := len(t.MatchExpressions) + len(t.MatchFields)
	t.MatchExpressions = slices.DeleteFunc(slices.Clone(t.MatchExpressions), h.IsHostLevelExpression)
	t.MatchFields = slices.DeleteFunc(slices.Clone(t.MatchFields), h.IsHostLevelField)
	after := len(t.MatchExpressions) + len(t.MatchFields)
	if len(t.MatchExpressions) == 0 {
		t.MatchExpressions = nil
	}
	if len(t.MatchFields) == 0 {
		t.MatchFields = nil
	}
	return t, before > 0 && after == 0
}

// PodSpecChanges is what of a host pod's spec changed since its member pod was made, among what may change on a
// running pod: whether a container's resources differ (an in-place resize), and the ephemeral containers the member
// pod lacks (kubectl debug). member may be a trimmed copy that holds only container names and resources.
func PodSpecChanges(host, member *corev1.Pod) (resize bool, added []corev1.EphemeralContainer) {
	for _, hc := range host.Spec.Containers {
		i := slices.IndexFunc(member.Spec.Containers, func(c corev1.Container) bool { return c.Name == hc.Name })
		if i >= 0 && !equality.Semantic.DeepEqual(hc.Resources, member.Spec.Containers[i].Resources) {
			resize = true
		}
	}
	for _, e := range host.Spec.EphemeralContainers {
		if !slices.ContainsFunc(member.Spec.EphemeralContainers, func(m corev1.EphemeralContainer) bool { return m.Name == e.Name }) {
			added = append(added, *e.DeepCopy())
		}
	}
	return resize, added
}
