package kubelet

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/utils/ptr"
)

func TestLogOptions(t *testing.T) {
	since := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   api.ContainerLogOpts
		want *corev1.PodLogOptions
	}{
		{"none", api.ContainerLogOpts{}, &corev1.PodLogOptions{Container: "app"}},
		{"follow, previous, timestamps", api.ContainerLogOpts{Follow: true, Previous: true, Timestamps: true},
			&corev1.PodLogOptions{Container: "app", Follow: true, Previous: true, Timestamps: true}},
		{"tail", api.ContainerLogOpts{Tail: 5}, &corev1.PodLogOptions{Container: "app", TailLines: ptr.To[int64](5)}},
		{"limit bytes", api.ContainerLogOpts{LimitBytes: 100}, &corev1.PodLogOptions{Container: "app", LimitBytes: ptr.To[int64](100)}},
		{"since seconds", api.ContainerLogOpts{SinceSeconds: 60}, &corev1.PodLogOptions{Container: "app", SinceSeconds: ptr.To[int64](60)}},
		{"since time", api.ContainerLogOpts{SinceTime: since}, &corev1.PodLogOptions{Container: "app", SinceTime: ptr.To(metav1.NewTime(since))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, LogOptions("app", tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthorizationNamesThePodsNode(t *testing.T) {
	a := podAuth{nodeOf: func(ns, pod string) string {
		if ns == "shop" && pod == "web-1" {
			return "tether-m1"
		}
		return ""
	}}
	u := &user.DefaultInfo{Name: "alice"}
	tests := []struct {
		method, path       string
		node, verb, subres string
	}{
		{http.MethodGet, "/containerLogs/shop/web-1/app", "tether-m1", "get", "proxy"},
		{http.MethodPost, "/exec/shop/web-1/app", "tether-m1", "create", "proxy"},
		{http.MethodPost, "/portForward/shop/web-1", "tether-m1", "create", "proxy"},
		{http.MethodGet, "/containerLogs/shop/unknown/app", "", "get", "proxy"},
		{http.MethodGet, "/stats/summary", "", "get", "stats"},
		{http.MethodGet, "/pods", "", "get", "proxy"},
	}
	for _, tt := range tests {
		attrs := a.GetRequestAttributes(u, httptest.NewRequest(tt.method, tt.path, nil))
		if attrs.GetName() != tt.node || attrs.GetVerb() != tt.verb || attrs.GetSubresource() != tt.subres || attrs.GetResource() != "nodes" {
			t.Errorf("%s %s: node %q verb %q subresource %q resource %q", tt.method, tt.path, attrs.GetName(), attrs.GetVerb(),
				attrs.GetSubresource(), attrs.GetResource())
		}
	}
}
