package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
)

// countSecrets is the quota resource that counts a namespace's Secrets.
const countSecrets corev1.ResourceName = "count/secrets"

// EnsureObjectCountQuota creates, in member namespace ns (one Tether created), the ResourceQuota whose status
// counts its Secrets (api.ObjectCountQuota), unless it exists. tether-node may not list Secrets in a member:
// the quota is how it knows that a namespace it would delete holds none of someone else's.
func EnsureObjectCountQuota(ctx context.Context, c kubernetes.Interface, ns string, owner api.Owner) error {
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: api.ObjectCountQuota, Namespace: ns, Labels: owner.Labels()},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{countSecrets: *resource.NewQuantity(api.ObjectCountLimit, resource.DecimalSI)}}}
	_, err := c.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the object count quota of member namespace %s: %w", ns, err)
	}
	return nil
}

// ErrNoObjectCountQuota says that the namespace has no object count quota of Tether's for this host.
var ErrNoObjectCountQuota = errors.New("no object count quota of Tether's")

// SecretCount is the number of Secrets in member namespace ns, as its object count quota counted them; known is
// false while the quota has not counted yet. Without a quota of Tether's it returns ErrNoObjectCountQuota.
func SecretCount(ctx context.Context, c kubernetes.Interface, ns string, owner api.Owner) (n int64, known bool, err error) {
	q, err := c.CoreV1().ResourceQuotas(ns).Get(ctx, api.ObjectCountQuota, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && !owner.OwnsForCluster(q) {
		return 0, false, fmt.Errorf("namespace %s: %w", ns, ErrNoObjectCountQuota)
	}
	if err != nil {
		return 0, false, err
	}
	used, ok := q.Status.Used[countSecrets]
	return used.Value(), ok, nil
}
