package provider

import (
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
