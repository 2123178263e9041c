package memberunschedulable

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/tetherkube/tether/api"
)

// avoidStore keeps the avoid record (api.Avoid) in its ConfigMap: every change is a read-modify-write with the
// resourceVersion, retried on conflict, so that several replicas (and a restart) share one record. Expired entries
// are pruned on every write. It is written only when a pod is evicted, so it reads the API directly.
type avoidStore struct {
	client          kubernetes.Interface
	namespace, name string
}

// update applies change to the record and writes it back (creating the ConfigMap if needed).
func (s *avoidStore) update(ctx context.Context, now time.Time, change func(api.Avoid)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := s.client.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return err
		}
		if create {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name, Labels: api.ManagedLabels()}}
		}
		rec, perr := api.ParseAvoid(cm.Data)
		if perr != nil {
			klog.FromContext(ctx).Error(perr, "dropping avoid entries that do not decode")
		}
		change(rec)
		rec.Prune(now)
		cm.Data = rec.Encode()
		if create {
			_, err = s.client.CoreV1().ConfigMaps(s.namespace).Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Another replica made it meanwhile: read it again.
				return apierrors.NewConflict(corev1.Resource("configmaps"), s.name, err)
			}
			return err
		}
		_, err = s.client.CoreV1().ConfigMaps(s.namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", s.namespace, s.name, err)
	}
	return nil
}

// load reads the record; a missing ConfigMap is an empty record.
func (s *avoidStore) load(ctx context.Context) (api.Avoid, error) {
	cm, err := s.client.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return api.Avoid{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", s.namespace, s.name, err)
	}
	rec, perr := api.ParseAvoid(cm.Data)
	if perr != nil {
		klog.FromContext(ctx).Error(perr, "ignoring avoid entries that do not decode")
	}
	return rec, nil
}
