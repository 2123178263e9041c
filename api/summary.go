package api

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationNodeSummary on a virtual node is the member's node summary (JSON, see NodeSummary), written by
// tether-node with the node's capacity (debounced): enough for a scheduler plugin to tell, from the host alone,
// whether some node of the member can take a pod — its requests against free room, its node selector and affinity
// against labels, its tolerations against taints.
const AnnotationNodeSummary = "tether.io/node-summary"

// Limits of a summary, so that it stays small for members of thousands of nodes (an annotation must stay well
// under 256 KiB): at most MaxSummaryClasses classes (label keys with the most values are dropped until the nodes
// fall into that many, and named in IgnoredLabels), and at most MaxSummaryPoints free vectors per class (beyond
// that, neighbouring vectors are merged into their component-wise maximum).
const (
	MaxSummaryClasses = 64
	MaxSummaryPoints  = 32
)

// NodeSummary describes a member's schedulable nodes (Ready, not cordoned) by class: nodes with the same labels
// (but for kubernetes.io/hostname and IgnoredLabels) and taints.
//
// Its answers err on one side only: merged vectors and ignored labels can make a pod look as if it fits where it
// does not (the member leaves it Pending and the descheduler moves it), never the other way.
type NodeSummary struct {
	// At is when tether-node computed it from its caches.
	At metav1.Time `json:"at"`
	// Resources names the columns of every free vector: cpu in millicores, the others in units (memory in bytes).
	Resources []corev1.ResourceName `json:"resources"`
	// IgnoredLabels are label keys left out of the classes; a requirement on one of them is taken as met.
	IgnoredLabels []string    `json:"ignoredLabels,omitempty"`
	Classes       []NodeClass `json:"classes"`
}

// NodeClass is the nodes of a member with the same labels and taints.
type NodeClass struct {
	Labels map[string]string `json:"labels,omitempty"`
	Taints []corev1.Taint    `json:"taints,omitempty"`
	// Nodes is how many nodes the class has.
	Nodes int `json:"nodes"`
	// Free is the Pareto frontier of the nodes' free vectors (allocatable minus the requests of every pod on the
	// node): a pod fits some node of the class if and only if its request vector is at most one of them.
	Free [][]int64 `json:"free"`
}

// Vector is a resource list in the summary's columns (cpu in millicores). A resource it names that is not a
// column makes ok false: no node of the member offers it.
func (s NodeSummary) Vector(l corev1.ResourceList) (v []int64, ok bool) {
	v = make([]int64, len(s.Resources))
	col := map[corev1.ResourceName]int{}
	for i, r := range s.Resources {
		col[r] = i
	}
	for name, q := range l {
		i, known := col[name]
		if !known {
			if q.IsZero() {
				continue
			}
			return nil, false
		}
		if name == corev1.ResourceCPU {
			v[i] = q.MilliValue()
		} else {
			v[i] = q.Value()
		}
	}
	return v, true
}

// Fits reports whether the request vector (Vector's) is at most one of the class's free vectors.
func (c NodeClass) Fits(req []int64) bool {
	for _, f := range c.Free {
		if len(f) != len(req) {
			continue
		}
		fits := true
		for i := range f {
			if req[i] > f[i] {
				fits = false
				break
			}
		}
		if fits {
			return true
		}
	}
	return false
}

// Encode is the annotation value of s.
func (s NodeSummary) Encode() string {
	b, _ := json.Marshal(s) // plain data always marshals
	return string(b)
}

// ParseNodeSummary decodes AnnotationNodeSummary strictly. The error names the annotation.
func ParseNodeSummary(v string) (NodeSummary, error) {
	var s NodeSummary
	if err := unmarshalStrict(v, &s); err != nil {
		return NodeSummary{}, fmt.Errorf("annotation %s: %w", AnnotationNodeSummary, err)
	}
	for i, c := range s.Classes {
		for _, f := range c.Free {
			if len(f) != len(s.Resources) {
				return NodeSummary{}, fmt.Errorf("annotation %s: class %d: a free vector of %d values for %d resources", AnnotationNodeSummary, i, len(f), len(s.Resources))
			}
		}
	}
	return s, nil
}
