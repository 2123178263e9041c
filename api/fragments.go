package api

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Fragments is the content of AnnotationFragments: per resource, the largest free amount on one usable member node
// (allocatable minus the requests of every pod on it, Tether's included), and the number of usable nodes. A pod
// that asks for more than LargestFree of some resource fits no member node, whatever the node's allocatable says.
type Fragments struct {
	UsableNodes int                 `json:"usableNodes"`
	LargestFree corev1.ResourceList `json:"largestFree,omitempty"`
}

// Encode is the annotation value of f.
func (f Fragments) Encode() string {
	b, _ := json.Marshal(f) // a count and a map of quantities always marshal
	return string(b)
}

// ParseFragments decodes AnnotationFragments strictly. The error names the annotation.
func ParseFragments(s string) (Fragments, error) {
	var f Fragments
	if err := unmarshalStrict(s, &f); err != nil {
		return Fragments{}, fmt.Errorf("annotation %s: %w", AnnotationFragments, err)
	}
	return f, nil
}
