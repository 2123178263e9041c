package forge

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tetherkube/tether/api"
)

// Service is the member copy of a host Service: same name, ports and session affinity, no selector (its
// EndpointSlices are mirrored from the host's), and a cluster IP of the member's own. A headless Service stays
// headless and an ExternalName one stays as it is; NodePort and LoadBalancer become ClusterIP, since node ports
// would collide with the member's own.
func Service(src *corev1.Service, owner api.Owner) *corev1.Service {
	out := &corev1.Service{ObjectMeta: CopyMeta(src, owner), Spec: corev1.ServiceSpec{
		Type:                     src.Spec.Type,
		SessionAffinity:          src.Spec.SessionAffinity,
		SessionAffinityConfig:    src.Spec.SessionAffinityConfig.DeepCopy(),
		PublishNotReadyAddresses: src.Spec.PublishNotReadyAddresses,
		ExternalName:             src.Spec.ExternalName,
		IPFamilyPolicy:           src.Spec.IPFamilyPolicy,
	}}
	switch src.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return out
	case corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		out.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if src.Spec.ClusterIP == corev1.ClusterIPNone {
		out.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for _, p := range src.Spec.Ports {
		p.NodePort = 0
		out.Spec.Ports = append(out.Spec.Ports, p)
	}
	return out
}

// ServiceAction compares a Service copy (have) with what it should be (want). A copy that would change between
// headless and not, or to or from ExternalName, is replaced: the member does not allow that in place.
func ServiceAction(have, want *corev1.Service) CopyAction {
	switch {
	case have.Annotations[api.AnnotationHostUID] != want.Annotations[api.AnnotationHostUID],
		(have.Spec.ClusterIP == corev1.ClusterIPNone) != (want.Spec.ClusterIP == corev1.ClusterIPNone),
		(have.Spec.Type == corev1.ServiceTypeExternalName) != (want.Spec.Type == corev1.ServiceTypeExternalName):
		return CopyReplace
	case have.Spec.Type == want.Spec.Type && have.Spec.SessionAffinity == want.Spec.SessionAffinity &&
		equality.Semantic.DeepEqual(have.Spec.SessionAffinityConfig, want.Spec.SessionAffinityConfig) &&
		have.Spec.PublishNotReadyAddresses == want.Spec.PublishNotReadyAddresses &&
		have.Spec.ExternalName == want.Spec.ExternalName && samePorts(have.Spec.Ports, want.Spec.Ports) &&
		have.Spec.Selector == nil && equality.Semantic.DeepEqual(have.Labels, want.Labels):
		return CopyInStep
	}
	return CopyUpdate
}

// UpdatedService is the copy have with want's content, keeping what the member allocated (its cluster IPs and IP
// families).
func UpdatedService(have, want *corev1.Service) *corev1.Service {
	up := have.DeepCopy()
	up.Labels, up.Annotations = want.Labels, want.Annotations
	ips, ipsAll, families, policy := up.Spec.ClusterIP, up.Spec.ClusterIPs, up.Spec.IPFamilies, up.Spec.IPFamilyPolicy
	up.Spec = *want.Spec.DeepCopy()
	up.Spec.ClusterIP, up.Spec.ClusterIPs, up.Spec.IPFamilies = ips, ipsAll, families
	if up.Spec.IPFamilyPolicy == nil {
		up.Spec.IPFamilyPolicy = policy
	}
	return up
}

func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.NodePort, y.NodePort = 0, 0
		if x.Protocol == "" {
			x.Protocol = corev1.ProtocolTCP
		}
		if y.Protocol == "" {
			y.Protocol = corev1.ProtocolTCP
		}
		if !equality.Semantic.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// EndpointSlice is the member copy of a host EndpointSlice of a Service: its addresses (the pod IPs the members
// report, and the host's own pods), readiness, hostnames, zones and ports, labelled with the Service's name and
// Tether as its manager, and owned by the member's copy of the Service (serviceUID), so that the member's garbage
// collector removes it with that copy. Node names and pod references name host objects and are left out.
func EndpointSlice(src *discoveryv1.EndpointSlice, owner api.Owner, service string, serviceUID string) *discoveryv1.EndpointSlice {
	meta := CopyMeta(src, owner)
	maps.Copy(meta.Labels, map[string]string{
		discoveryv1.LabelServiceName: service,
		discoveryv1.LabelManagedBy:   api.EndpointSliceManagedBy,
	})
	meta.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: service, UID: types.UID(serviceUID)}}
	out := &discoveryv1.EndpointSlice{ObjectMeta: meta, AddressType: src.AddressType, Ports: src.Ports}
	for _, e := range src.Endpoints {
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{
			Addresses: e.Addresses, Conditions: e.Conditions, Hostname: e.Hostname, Zone: e.Zone,
		})
	}
	return out
}

// EndpointSliceAction compares a slice copy (have) with what it should be (want).
func EndpointSliceAction(have, want *discoveryv1.EndpointSlice) CopyAction {
	switch {
	case have.Annotations[api.AnnotationHostUID] != want.Annotations[api.AnnotationHostUID], have.AddressType != want.AddressType:
		return CopyReplace
	case equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) && equality.Semantic.DeepEqual(have.Ports, want.Ports) &&
		equality.Semantic.DeepEqual(have.Labels, want.Labels) && equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences):
		return CopyInStep
	}
	return CopyUpdate
}
