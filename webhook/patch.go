package webhook

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/tetherkube/tether/api"
)

// PatchOp is one JSON patch (RFC 6902) operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch is the minimal JSON patch from a pod to its mutation: Mutate changes only the scheduling annotation and the
// scheduling fields (and the scheduler's name), so each is added, replaced or removed as a whole.
func Patch(in, out *corev1.Pod) []PatchOp {
	var ops []PatchOp
	field := func(path string, had, has bool, same bool, value any) {
		switch {
		case same:
		case !has:
			ops = append(ops, PatchOp{Op: "remove", Path: path})
		case !had:
			ops = append(ops, PatchOp{Op: "add", Path: path, Value: value})
		default:
			ops = append(ops, PatchOp{Op: "replace", Path: path, Value: value})
		}
	}
	if v, ok := out.Annotations[api.AnnotationScheduling]; ok && in.Annotations[api.AnnotationScheduling] != v {
		if in.Annotations == nil {
			ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{api.AnnotationScheduling: v}})
		} else {
			_, had := in.Annotations[api.AnnotationScheduling]
			field("/metadata/annotations/"+escape(api.AnnotationScheduling), had, true, false, v)
		}
	}
	a, b := &in.Spec, &out.Spec
	field("/spec/nodeSelector", len(a.NodeSelector) > 0, len(b.NodeSelector) > 0, equality.Semantic.DeepEqual(a.NodeSelector, b.NodeSelector), b.NodeSelector)
	field("/spec/affinity", a.Affinity != nil, b.Affinity != nil, equality.Semantic.DeepEqual(a.Affinity, b.Affinity), b.Affinity)
	field("/spec/tolerations", len(a.Tolerations) > 0, len(b.Tolerations) > 0, equality.Semantic.DeepEqual(a.Tolerations, b.Tolerations), b.Tolerations)
	field("/spec/topologySpreadConstraints", len(a.TopologySpreadConstraints) > 0, len(b.TopologySpreadConstraints) > 0,
		equality.Semantic.DeepEqual(a.TopologySpreadConstraints, b.TopologySpreadConstraints), b.TopologySpreadConstraints)
	field("/spec/schedulerName", a.SchedulerName != "", b.SchedulerName != "", a.SchedulerName == b.SchedulerName, b.SchedulerName)
	return ops
}

// escape encodes a JSON pointer token (RFC 6901).
func escape(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }
