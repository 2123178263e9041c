package api

import (
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
)

// Scheduling is the content of AnnotationScheduling: the fields the webhook parked so that the host scheduler only
// chooses a member, restored on the member pod so that the member scheduler honours them. An empty object ("{}")
// means nothing was parked; the annotation's presence marks a pod the webhook has seen.
type Scheduling struct {
	NodeSelector              map[string]string                 `json:"nodeSelector,omitempty"`
	Affinity                  *corev1.Affinity                  `json:"affinity,omitempty"`
	Tolerations               []corev1.Toleration               `json:"tolerations,omitempty"`
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
}

// ParseScheduling decodes AnnotationScheduling strictly, as the apiserver decodes objects: field names are
// case-sensitive, and unknown or duplicate fields are errors. The error names the annotation.
func ParseScheduling(s string) (*Scheduling, error) {
	var out Scheduling
	if err := unmarshalStrict(s, &out); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationScheduling, err)
	}
	return &out, nil
}

// Encode is the annotation value of s.
func (s *Scheduling) Encode() (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

func unmarshalStrict(s string, v any) error {
	strict, err := kjson.UnmarshalStrict([]byte(s), v, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	return err
}
