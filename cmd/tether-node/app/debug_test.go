package app

import "testing"

func TestRequestVerbAndResource(t *testing.T) {
	for _, tc := range []struct {
		method, path   string
		verb, resource string
	}{
		{"POST", "/api/v1/namespaces/{namespace}/pods", "POST", "pods"},
		{"GET", "/api/v1/namespaces/{namespace}/pods", "LIST", "pods"},
		{"GET", "/api/v1/namespaces/{namespace}/pods/{name}", "GET", "pods"},
		{"PUT", "/api/v1/namespaces/{namespace}/pods/{name}/status", "PUT", "pods/status"},
		{"GET", "/api/v1/namespaces/{name}", "GET", "namespaces"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}", "PUT", "leases"},
		{"POST", "/apis/authentication.k8s.io/v1/tokenreviews", "POST", "tokenreviews"},
		{"GET", "/readyz", "GET", "/readyz"},
	} {
		if got := requestVerb(tc.method, tc.path); got != tc.verb {
			t.Errorf("requestVerb(%s, %s) = %s, want %s", tc.method, tc.path, got, tc.verb)
		}
		if got := requestResource(tc.path); got != tc.resource {
			t.Errorf("requestResource(%s) = %s, want %s", tc.path, got, tc.resource)
		}
	}
}
