package kubelet

import (
	"context"
	"net"
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

func TestNodeLevelRequestsAreAuthorizedOnTheirPortsNode(t *testing.T) {
	members := map[int32][]*Member{
		10250: {{NodeName: "tether-m1"}, {NodeName: "tether-m3"}},
		10251: {{NodeName: "tether-m2"}},
	}
	a := podAuth{nodeOf: func(string, string) string { return "" }, nodesOn: func(port int32) []*Member { return members[port] }}
	u := &user.DefaultInfo{Name: "metrics-server"}
	tests := []struct {
		port         int
		path         string
		node, subres string
	}{
		{10251, "/metrics/resource", "tether-m2", "metrics"},
		{10251, "/stats/summary", "tether-m2", "stats"},
		// two nodes answer together: the caller needs the permission on every node
		{10250, "/metrics/resource", "", "metrics"},
		{10252, "/stats/summary", "", "stats"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, tt.path, nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tt.port}))
		attrs := a.GetRequestAttributes(u, r)
		if attrs.GetName() != tt.node || attrs.GetSubresource() != tt.subres {
			t.Errorf("port %d %s: node %q subresource %q, want %q %q", tt.port, tt.path, attrs.GetName(), attrs.GetSubresource(), tt.node, tt.subres)
		}
	}
}

type byPort map[int32][]*Member

func (b byPort) MemberOf(string, string) (*Member, error) { return nil, NotFound("", "") }
func (b byPort) MembersOn(port int32) []*Member           { return b[port] }

// /pods answers for the node(s) of the port it is asked on, as it is authorized.
func TestPodsListsThePortsNodes(t *testing.T) {
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node}}
	}
	r := &Relay{
		Router: byPort{10250: {{NodeName: "tether-m1"}}, 10251: {{NodeName: "tether-m2"}}},
		Pods: func(context.Context) ([]*corev1.Pod, error) {
			return []*corev1.Pod{pod("a", "tether-m1"), pod("b", "tether-m2"), pod("c", "tether-m1")}, nil
		},
	}
	at := func(port int) context.Context {
		return context.WithValue(t.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	}
	got, err := r.podsOnPort(at(10250))
	if err != nil || len(got) != 2 || got[0].Name != "a" || got[1].Name != "c" {
		t.Errorf("port 10250: %v %v, want a and c", got, err)
	}
	if _, err := r.podsOnPort(at(10299)); err == nil {
		t.Error("a port without a node must be an error")
	}
}
