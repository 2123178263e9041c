package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Outcomes of an admission, the label of the admissions metric.
const (
	OutcomeMutated   = "mutated"
	OutcomeUnchanged = "unchanged"
	OutcomeSkipped   = "skipped"
	OutcomeDenied    = "denied"
	OutcomeError     = "error"
)

// Handler serves AdmissionReview v1 requests for pod CREATE (Mutate) and UPDATE (MutateUpdate).
type Handler struct {
	Options Options
	// SkipNamespaces are never mutated (kube-system and Tether's own), whatever the configuration's selector says.
	SkipNamespaces []string

	admissions *prometheus.CounterVec
	latency    prometheus.Histogram
}

// NewHandler returns a handler whose metrics are registered with reg.
func NewHandler(o Options, skipNamespaces []string, reg prometheus.Registerer) (*Handler, error) {
	h := &Handler{
		Options:        o,
		SkipNamespaces: skipNamespaces,
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_webhook_admissions_total", Help: "Pod admissions by outcome.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tether_webhook_admission_duration_seconds", Help: "Time to answer one admission review.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{h.admissions, h.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// maxBody bounds a review: pods are far smaller.
const maxBody = 3 << 20

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { h.latency.Observe(time.Since(start).Seconds()) }()
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		h.admissions.WithLabelValues(OutcomeError).Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		h.admissions.WithLabelValues(OutcomeError).Inc()
		http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp, outcome := h.Review(review.Request)
	h.admissions.WithLabelValues(outcome).Inc()
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

// Review answers one admission request.
func (h *Handler) Review(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind != "Pod" || req.SubResource != "" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return resp, OutcomeSkipped
	}
	if slices.Contains(h.SkipNamespaces, req.Namespace) {
		return resp, OutcomeSkipped
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Message: "decode pod: " + err.Error()}
		return resp, OutcomeError
	}
	if skip, _ := Skip(&pod); skip {
		return resp, OutcomeSkipped
	}
	var out *corev1.Pod
	if req.Operation == admissionv1.Update {
		var old corev1.Pod
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Message: "decode old pod: " + err.Error()}
			return resp, OutcomeError
		}
		out = MutateUpdate(&old, &pod)
	} else {
		var err error
		if out, err = Mutate(&pod, h.Options); err != nil {
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
				Message: err.Error()}
			return resp, OutcomeDenied
		}
	}
	ops := Patch(&pod, out)
	if len(ops) == 0 {
		return resp, OutcomeUnchanged
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: err.Error()}
		return resp, OutcomeError
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	return resp, OutcomeMutated
}
