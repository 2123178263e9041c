package forge

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// PodStatus is the host pod's status for a member pod's status. The member is the truth for phase, IPs and
// containers. Conditions the host owns (its readiness gates, DisruptionTarget) are kept from the host, and the
// host's Ready condition also waits for its readiness gates, which the member pod does not carry.
func PodStatus(host *corev1.Pod, member *corev1.Pod) corev1.PodStatus {
	st := *member.Status.DeepCopy()
	st.NominatedNodeName = ""
	gates := make([]corev1.PodConditionType, 0, len(host.Spec.ReadinessGates))
	for _, g := range host.Spec.ReadinessGates {
		gates = append(gates, g.ConditionType)
	}
	for _, c := range host.Status.Conditions {
		if (c.Type == corev1.DisruptionTarget || slices.Contains(gates, c.Type)) && findCondition(st.Conditions, c.Type) < 0 {
			st.Conditions = append(st.Conditions, c)
		}
	}
	if i := findCondition(st.Conditions, corev1.PodReady); i >= 0 && st.Conditions[i].Status == corev1.ConditionTrue {
		for _, g := range gates {
			if j := findCondition(st.Conditions, g); j < 0 || st.Conditions[j].Status != corev1.ConditionTrue {
				st.Conditions[i].Status = corev1.ConditionFalse
				st.Conditions[i].Reason = "ReadinessGatesNotReady"
				st.Conditions[i].Message = "the status of pod readiness gate \"" + string(g) + "\" is not \"True\""
				break
			}
		}
	}
	// Keep the host's own timestamps where nothing changed, so that an unchanged member status is an unchanged
	// host status (no write).
	for i := range st.Conditions {
		if j := findCondition(host.Status.Conditions, st.Conditions[i].Type); j >= 0 {
			h := host.Status.Conditions[j]
			if h.Status == st.Conditions[i].Status {
				st.Conditions[i].LastTransitionTime = h.LastTransitionTime
				st.Conditions[i].LastProbeTime = h.LastProbeTime
			}
		}
	}
	if st.StartTime == nil {
		st.StartTime = host.Status.StartTime
	}
	return st
}

func findCondition(cs []corev1.PodCondition, t corev1.PodConditionType) int {
	return slices.IndexFunc(cs, func(c corev1.PodCondition) bool { return c.Type == t })
}
