package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tetherkube/tether/api"
)

func review(t *testing.T, h *Handler, op admissionv1.Operation, ns string, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, _ := json.Marshal(pod)
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "req-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: op, Namespace: ns, Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: raw}},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "req-1" {
		t.Fatalf("response %+v", out.Response)
	}
	return out.Response
}

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, err := NewHandler(DefaultOptions(), []string{"kube-system", "tether-system"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	resp := review(t, h, admissionv1.Create, "shop", makePod(nodeSelector("disktype", "ssd")))
	if !resp.Allowed || resp.PatchType == nil || !strings.Contains(string(resp.Patch), api.AnnotationScheduling) {
		t.Errorf("create: allowed %v patch %s", resp.Allowed, resp.Patch)
	}
	if resp := review(t, h, admissionv1.Create, "kube-system", makePod(nodeSelector("disktype", "ssd"))); !resp.Allowed || resp.Patch != nil {
		t.Errorf("kube-system pod was patched: %s", resp.Patch)
	}
	bad := makePod(func(p *corev1.Pod) { p.Annotations = map[string]string{api.AnnotationScheduling: "nope"} })
	if resp := review(t, h, admissionv1.Create, "shop", bad); resp.Allowed || !strings.Contains(resp.Result.Message, api.AnnotationScheduling) {
		t.Errorf("malformed: allowed %v result %+v", resp.Allowed, resp.Result)
	}
	if resp := review(t, h, admissionv1.Delete, "shop", makePod()); !resp.Allowed || resp.Patch != nil {
		t.Errorf("delete was patched")
	}
	for outcome, want := range map[string]float64{OutcomeMutated: 1, OutcomeSkipped: 2, OutcomeDenied: 1} {
		if got := testutil.ToFloat64(h.admissions.WithLabelValues(outcome)); got != want {
			t.Errorf("admissions{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader("{")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("garbage: status %d", rec.Code)
	}
}
