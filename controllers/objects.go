package controllers

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// DeleteOwned deletes an owned member copy through del with a UID precondition: gone already, or another object of
// that name now, is fine (that one is not ours to delete).
func DeleteOwned(have metav1.Object, del func(metav1.DeleteOptions) error) error {
	err := del(metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(have.GetUID()))})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete member copy %s/%s: %w", have.GetNamespace(), have.GetName(), err)
	}
	return nil
}

// Objects views a list's items as metav1.Objects.
func Objects[T any, PT interface {
	*T
	metav1.Object
}](items []T) []metav1.Object {
	out := make([]metav1.Object, len(items))
	for i := range items {
		out[i] = PT(&items[i])
	}
	return out
}

// Keys are the keys of every object in store, each as kind/<namespace>/<name> (kind/<name> for cluster objects).
func Keys(kind string, store cache.Store) []string {
	keys := store.ListKeys()
	for i, k := range keys {
		keys[i] = kind + "/" + k
	}
	return keys
}
