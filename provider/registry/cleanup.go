package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/provider/forge"
)

// ReasonMemberLeftBehind on the virtual node of a removed member: the member could not be reached, so what Tether
// created there is left; the message says how to remove it.
const ReasonMemberLeftBehind = "MemberCleanupSkipped"

// cleanupTimeout bounds the cleanup of a removed member.
const cleanupTimeout = 2 * time.Minute

// cleanup deletes, in a member that is being removed, what this virtual node created there: its pods, its copies
// of ConfigMaps, Secrets, ServiceAccounts and PersistentVolumeClaims (all selected by the node's ownership labels, deleted with UID
// preconditions), then the namespaces Tether created for this host that hold nothing else. A member that does not
// answer keeps all of it, and the virtual node gets an event saying how to clean up by hand.
func (r *Registry) cleanup(parent context.Context, s spec) {
	ctx, cancel := context.WithTimeout(parent, cleanupTimeout)
	defer cancel()
	node := api.NodeName(r.cfg.Node.NodePrefix, s.Name)
	owner := api.Owner{ClusterID: r.cfg.ClusterID, NodeName: node}
	logger := log.G(ctx).WithField("member", s.Name)
	clients, err := r.cfg.NewClients(s.Config)
	if err == nil {
		err = probe(ctx, clients)
	}
	if err != nil {
		msg := fmt.Sprintf("member %s was removed while it did not answer (%v): its pods, copies and namespaces are left there; "+
			"to remove them later run, against the member: kubectl delete pods,configmaps,secrets,serviceaccounts,persistentvolumeclaims -A -l %s "+
			"and delete the namespaces labelled %s=%s,%s=%s that are empty", s.Name, err, owner.Selector(),
			api.LabelManagedBy, api.ManagedByTether, api.LabelHostCluster, r.cfg.ClusterID)
		logger.Warn(msg)
		r.cfg.Recorder.Event(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, corev1.EventTypeWarning, ReasonMemberLeftBehind, msg)
		return
	}
	if err := cleanupMember(ctx, clients.Kube, owner); err != nil {
		logger.WithError(err).Warn("clean up a removed member")
		return
	}
	logger.Info("removed member cleaned up")
}

func probe(ctx context.Context, c Clients) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if c.Probe != nil {
		return c.Probe(ctx)
	}
	_, err := c.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

// cleanupMember deletes what owner created in a member, and the namespaces Tether created that hold nothing else.
func cleanupMember(ctx context.Context, c kubernetes.Interface, owner api.Owner) error {
	sel := metav1.ListOptions{LabelSelector: owner.Selector()}
	var errs []error
	del := func(kind string, list func() []metav1.Object, remove func(ns, name string, o metav1.DeleteOptions) error) {
		for _, obj := range list() {
			o := metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(obj.GetUID()))}
			if err := remove(obj.GetNamespace(), obj.GetName(), o); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("delete %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err))
			}
		}
	}
	core := c.CoreV1()
	if l, err := core.Pods("").List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		del("pod", func() []metav1.Object { return controllers.Objects(l.Items) }, func(ns, n string, o metav1.DeleteOptions) error {
			return core.Pods(ns).Delete(ctx, n, o)
		})
	}
	if l, err := core.ConfigMaps("").List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		// The Secret copies, which tether-node may not list, are those its records name; the records go after
		// them (and the member's garbage collector takes any copy a record owns but does not name).
		del("secret", func() []metav1.Object { return recordedSecrets(l.Items, owner) }, func(ns, n string, o metav1.DeleteOptions) error {
			return core.Secrets(ns).Delete(ctx, n, o)
		})
		del("configmap", func() []metav1.Object { return controllers.Objects(l.Items) }, func(ns, n string, o metav1.DeleteOptions) error {
			return core.ConfigMaps(ns).Delete(ctx, n, o)
		})
	}
	if l, err := core.ServiceAccounts("").List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		del("serviceaccount", func() []metav1.Object { return controllers.Objects(l.Items) }, func(ns, n string, o metav1.DeleteOptions) error {
			return core.ServiceAccounts(ns).Delete(ctx, n, o)
		})
	}
	if l, err := core.PersistentVolumeClaims("").List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		del("persistentvolumeclaim", func() []metav1.Object { return controllers.Objects(l.Items) }, func(ns, n string, o metav1.DeleteOptions) error {
			return core.PersistentVolumeClaims(ns).Delete(ctx, n, o)
		})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return deleteEmptyNamespaces(ctx, c, owner)
}

// deleteEmptyNamespaces deletes the namespaces Tether created for this host cluster in which nothing is left but
// Tether's own objects (being deleted) and what every namespace has (its default ServiceAccount, kube-root-ca.crt).
func deleteEmptyNamespaces(ctx context.Context, c kubernetes.Interface, owner api.Owner) error {
	core := c.CoreV1()
	nsSel := labels.SelectorFromSet(labels.Set{api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: owner.ClusterID})
	nss, err := core.Namespaces().List(ctx, metav1.ListOptions{LabelSelector: nsSel.String()})
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range nss.Items {
		busy, err := holdsOthers(ctx, c, ns.Name, owner)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if busy {
			// Kept for what else lives there: only its quota, Tether's, goes.
			if q, err := core.ResourceQuotas(ns.Name).Get(ctx, api.ObjectCountQuota, metav1.GetOptions{}); err == nil && owner.OwnsForCluster(q) {
				err := core.ResourceQuotas(ns.Name).Delete(ctx, q.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(q.UID))})
				if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					errs = append(errs, fmt.Errorf("delete the object count quota of namespace %s: %w", ns.Name, err))
				}
			}
			continue
		}
		err = core.Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(ns.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns.Name, err))
		}
	}
	return errors.Join(errs...)
}

// recordedSecrets are the Secret copies named by the records among cms (each with its recorded UID).
func recordedSecrets(cms []corev1.ConfigMap, owner api.Owner) []metav1.Object {
	var out []metav1.Object
	for _, cm := range cms {
		if cm.Name != owner.SecretRecordName() || !owner.Owns(&cm) {
			continue
		}
		for name, v := range cm.Data {
			var e forge.SecretEntry
			if json.Unmarshal([]byte(v), &e) == nil && e.UID != "" {
				out = append(out, &metav1.ObjectMeta{Namespace: cm.Namespace, Name: name, UID: e.UID})
			}
		}
	}
	return out
}

// secretsSettle bounds the wait for a namespace's object count quota to count the Secret copies just deleted.
const secretsSettle = 30 * time.Second

// holdsOthers reports whether namespace ns holds a pod, ConfigMap, Secret or ServiceAccount that is not this
// node's (another virtual node of the same member counts as someone else) nor one every namespace has. Secrets
// are counted by the namespace's object count quota, which may lag the deletes of the copies by a moment.
func holdsOthers(ctx context.Context, c kubernetes.Interface, ns string, owner api.Owner) (bool, error) {
	core := c.CoreV1()
	foreign := func(objs []metav1.Object, standard string) bool {
		for _, o := range objs {
			if !owner.Owns(o) && o.GetName() != standard {
				return true
			}
		}
		return false
	}
	pods, err := core.Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return true, err
	}
	cms, err := core.ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return true, err
	}
	sas, err := core.ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return true, err
	}
	if foreign(controllers.Objects(pods.Items), "") || foreign(controllers.Objects(cms.Items), "kube-root-ca.crt") ||
		foreign(controllers.Objects(sas.Items), "default") {
		return true, nil
	}
	var n int64
	known := false
	// Its timeout is no error: the last count decides.
	_ = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, secretsSettle, true, func(ctx context.Context) (bool, error) {
		var err error
		n, known, err = controllers.SecretCount(ctx, c, ns, owner)
		return errors.Is(err, controllers.ErrNoObjectCountQuota) || err == nil && known && n == 0, nil
	})
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	return !known || n > 0, nil // a namespace whose Secrets are not counted is kept
}
