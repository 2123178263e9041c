package provider

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
)

// TrimForCache is the transform of every informer of tether-node: it drops managedFields, which nothing in Tether
// reads and which make up a good part of a cached pod (kwok's status, the scheduler's, Tether's own). Status
// updates built from a trimmed object carry no managedFields, and the apiserver then keeps the stored ones.
var TrimForCache cache.TransformFunc = func(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// trimMemberCache is the transform of a member's informers: besides managedFields it keeps of a member pod only
// what Tether reads from the cache — metadata (ownership), status, and of the spec the node, what resource
// requests are made of and the names of ephemeral containers — so that a member pod costs a fraction of a full copy. Code that needs more of a member
// pod's spec must read it from the member's apiserver.
var trimMemberCache cache.TransformFunc = func(obj any) (any, error) {
	obj, err := TrimForCache(obj)
	p, ok := obj.(*corev1.Pod)
	if err != nil || !ok {
		return obj, err
	}
	spec := corev1.PodSpec{NodeName: p.Spec.NodeName, Overhead: p.Spec.Overhead, Resources: p.Spec.Resources}
	for _, c := range p.Spec.InitContainers {
		spec.InitContainers = append(spec.InitContainers, corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy})
	}
	for _, c := range p.Spec.Containers {
		spec.Containers = append(spec.Containers, corev1.Container{Name: c.Name, Resources: c.Resources})
	}
	for _, c := range p.Spec.EphemeralContainers {
		spec.EphemeralContainers = append(spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name}})
	}
	p.Spec = spec
	return p, nil
}
