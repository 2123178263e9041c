package forge

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

func hostService(typ corev1.ServiceType, clusterIP string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "svc-1"},
		Spec: corev1.ServiceSpec{Type: typ, ClusterIP: clusterIP, Selector: map[string]string{"app": "web"},
			SessionAffinity: corev1.ServiceAffinityClientIP,
			Ports:           []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080, Protocol: corev1.ProtocolTCP}}}}
}

func TestService(t *testing.T) {
	tests := []struct {
		name      string
		src       *corev1.Service
		typ       corev1.ServiceType
		clusterIP string
	}{
		{"ClusterIP keeps its type, the member allocates the IP", hostService(corev1.ServiceTypeClusterIP, "10.0.0.10"), corev1.ServiceTypeClusterIP, ""},
		{"headless stays headless", hostService(corev1.ServiceTypeClusterIP, corev1.ClusterIPNone), corev1.ServiceTypeClusterIP, corev1.ClusterIPNone},
		{"NodePort becomes ClusterIP", hostService(corev1.ServiceTypeNodePort, "10.0.0.11"), corev1.ServiceTypeClusterIP, ""},
		{"LoadBalancer becomes ClusterIP", hostService(corev1.ServiceTypeLoadBalancer, "10.0.0.12"), corev1.ServiceTypeClusterIP, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Service(tt.src, copyOwner)
			if got.Spec.Type != tt.typ || got.Spec.ClusterIP != tt.clusterIP || got.Spec.Selector != nil ||
				got.Spec.SessionAffinity != corev1.ServiceAffinityClientIP || len(got.Spec.Ports) != 1 || got.Spec.Ports[0].NodePort != 0 ||
				got.Spec.Ports[0].TargetPort.IntVal != 8080 || got.Annotations[api.AnnotationHostUID] != "svc-1" || !copyOwner.Owns(got) {
				t.Errorf("copy %+v", got)
			}
			if tt.src.Spec.Ports[0].NodePort != 30080 {
				t.Error("the host Service was changed")
			}
		})
	}
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", UID: "svc-2"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}}
	if got := Service(ext, copyOwner); got.Spec.Type != corev1.ServiceTypeExternalName || got.Spec.ExternalName != "db.example.com" {
		t.Errorf("ExternalName copy %+v", got.Spec)
	}
}

func TestServiceAction(t *testing.T) {
	want := Service(hostService(corev1.ServiceTypeClusterIP, "10.0.0.10"), copyOwner)
	have := want.DeepCopy()
	have.Spec.ClusterIP, have.Spec.ClusterIPs = "10.96.0.5", []string{"10.96.0.5"} // the member's own
	if a := ServiceAction(have, want); a != CopyInStep {
		t.Errorf("in step: %d", a)
	}
	other := want.DeepCopy()
	other.Spec.Ports[0].Port = 81
	if a := ServiceAction(have, other); a != CopyUpdate {
		t.Errorf("new port: %d, want an update", a)
	}
	if up := UpdatedService(have, other); up.Spec.ClusterIP != "10.96.0.5" || up.Spec.Ports[0].Port != 81 {
		t.Errorf("update %+v: want the member's cluster IP and the new port", up.Spec)
	}
	headless := Service(hostService(corev1.ServiceTypeClusterIP, corev1.ClusterIPNone), copyOwner)
	if a := ServiceAction(have, headless); a != CopyReplace {
		t.Errorf("to headless: %d, want a replace", a)
	}
}

func TestEndpointSlice(t *testing.T) {
	src := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "shop", UID: "slice-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName: ptr.To("tether-m1"), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1", UID: "pod-1"}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}}
	got := EndpointSlice(src, copyOwner, "web", "member-svc-uid")
	if got.Labels[discoveryv1.LabelManagedBy] != api.EndpointSliceManagedBy || got.Labels[discoveryv1.LabelServiceName] != "web" || !copyOwner.Owns(got) {
		t.Errorf("labels %v", got.Labels)
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "member-svc-uid" || got.OwnerReferences[0].Kind != "Service" {
		t.Errorf("owner references %v", got.OwnerReferences)
	}
	e := got.Endpoints[0]
	if e.NodeName != nil || e.TargetRef != nil || e.Addresses[0] != "10.1.0.5" || !*e.Conditions.Ready {
		t.Errorf("endpoint %+v: want the address and readiness, no host node or pod", e)
	}
	if a := EndpointSliceAction(got, EndpointSlice(src, copyOwner, "web", "member-svc-uid")); a != CopyInStep {
		t.Errorf("in step: %d", a)
	}
	src.Endpoints[0].Conditions.Ready = ptr.To(false)
	if a := EndpointSliceAction(got, EndpointSlice(src, copyOwner, "web", "member-svc-uid")); a != CopyUpdate {
		t.Errorf("readiness changed: %d, want an update", a)
	}
}
