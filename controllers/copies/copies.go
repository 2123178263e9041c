// Package copies keeps a member's copies of host ConfigMaps, Secrets and ServiceAccounts in step with the host: a copy follows its
// host object (updated in place, or replaced when the host object was replaced under the same name or the copy is
// immutable), and a copy that no Tether pod on this member uses any more, or whose host object is gone, is deleted
// after a grace period. Copies are created with the pods that need them (the pod path); this controller also
// creates one again that it replaced or that someone deleted, while a pod uses it.
package copies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/provider/forge"
)

// Name is the controller's name in logs and metrics.
const Name = "copies"

// ReasonCopyConflict is the event reason on a host pod whose ConfigMap or Secret has a member object of the same
// name that Tether does not own (the same as the pod path's).
const ReasonCopyConflict = "MemberObjectConflict"

// Kinds of keys: "<kind>/<namespace>/<name>".
const (
	kindConfigMap      = "configmap"
	kindSecret         = "secret"
	kindServiceAccount = "serviceaccount"
	// kindRecord keys a namespace's record of Secret copies that names none ("record/<namespace>/").
	kindRecord = "record"
)

// Config is what the controller of one member needs.
type Config struct {
	// Member names the member; Owner is this virtual node's ownership.
	Member string
	Owner  api.Owner
	// Client writes to the member.
	Client kubernetes.Interface
	// Host informers, shared by every member: pods (bound to some node), ConfigMaps, Secrets and ServiceAccounts.
	// The controller adds its handlers in Run and removes them when Run returns.
	HostPods, HostConfigMaps, HostSecrets, HostServiceAccounts cache.SharedIndexInformer
	// Member informers of the copies this node owns (filtered by the ownership labels); the ConfigMaps hold the
	// records of the Secret copies too.
	ConfigMaps, ServiceAccounts cache.SharedIndexInformer
	// Secrets writes and tracks the Secret copies, which tether-node may not read (NewSecretCopies over the same
	// ConfigMap informer).
	Secrets *SecretCopies
	// Recorder writes events on host pods.
	Recorder record.EventRecorder
	// Grace is how long a copy that nothing uses stays before it is deleted.
	Grace time.Duration
	// Resync paces the periodic pass over every copy.
	Resync time.Duration
	// Metrics records reconciles and lag; nil: none.
	Metrics *controllers.Metrics
}

// Controller is the ConfigMap and Secret copy controller of one member.
type Controller struct {
	cfg            Config
	r              *controllers.Reconciler
	hostPods       corev1listers.PodLister
	hostConfigMaps corev1listers.ConfigMapLister
	hostSecrets    corev1listers.SecretLister
	hostSAs        corev1listers.ServiceAccountLister
	configMaps     corev1listers.ConfigMapLister
	sas            corev1listers.ServiceAccountLister

	unused  sync.Map // key → time.Time: since when nothing uses the copy
	changed sync.Map // key → time.Time: the host change not yet applied (for the lag metric)
}

// New builds the controller; Run runs it.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.HostPods == nil || cfg.HostConfigMaps == nil || cfg.HostSecrets == nil || cfg.HostServiceAccounts == nil ||
		cfg.ConfigMaps == nil || cfg.Secrets == nil || cfg.ServiceAccounts == nil || cfg.Recorder == nil {
		return nil, errors.New("copies: client, informers and recorder must be set")
	}
	if cfg.Grace < 0 {
		return nil, fmt.Errorf("copies: grace period %s is negative", cfg.Grace)
	}
	c := &Controller{
		cfg:            cfg,
		hostPods:       corev1listers.NewPodLister(cfg.HostPods.GetIndexer()),
		hostConfigMaps: corev1listers.NewConfigMapLister(cfg.HostConfigMaps.GetIndexer()),
		hostSecrets:    corev1listers.NewSecretLister(cfg.HostSecrets.GetIndexer()),
		hostSAs:        corev1listers.NewServiceAccountLister(cfg.HostServiceAccounts.GetIndexer()),
		configMaps:     corev1listers.NewConfigMapLister(cfg.ConfigMaps.GetIndexer()),
		sas:            corev1listers.NewServiceAccountLister(cfg.ServiceAccounts.GetIndexer()),
	}
	c.r = controllers.New(c.sync, controllers.Options{Name: Name, Member: cfg.Member, Keys: c.keys, Resync: cfg.Resync, Metrics: cfg.Metrics})
	return c, nil
}

// Run works until ctx ends, with workers goroutines. The informers must have synced.
func (c *Controller) Run(ctx context.Context, workers int) error {
	onHost := func(kind string) cache.ResourceEventHandler {
		return controllers.OnEvery(func(obj any) { c.hostChanged(kind, obj) })
	}
	onCopy := func(kind string) cache.ResourceEventHandler {
		return controllers.OnEvery(func(obj any) {
			if o, err := metaOf(obj); err == nil && !c.isRecord(kind, o) {
				c.r.Enqueue(key(kind, o.GetNamespace(), o.GetName()))
			}
		})
	}
	// A record that went takes its Secret copies with it (the member's garbage collector): each is written
	// again under a new record, or created again.
	onRecordGone := cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if o, err := metaOf(obj); err == nil && c.isRecord(kindConfigMap, o) {
			for _, k := range c.cfg.Secrets.RecordGone(o.GetNamespace(), o.GetUID()) {
				c.r.Enqueue(kindSecret + "/" + k)
			}
		}
	}}
	type h = controllers.Handler
	return c.r.RunWith(ctx, workers,
		h{Informer: c.cfg.HostConfigMaps, Handler: onHost(kindConfigMap)}, h{Informer: c.cfg.HostSecrets, Handler: onHost(kindSecret)},
		h{Informer: c.cfg.HostServiceAccounts, Handler: onHost(kindServiceAccount)},
		h{Informer: c.cfg.ConfigMaps, Handler: onCopy(kindConfigMap)}, h{Informer: c.cfg.ConfigMaps, Handler: onRecordGone},
		h{Informer: c.cfg.ServiceAccounts, Handler: onCopy(kindServiceAccount)},
		h{Informer: c.cfg.HostPods, Handler: cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) { c.hostPodChanged(obj, false) },
			DeleteFunc: func(obj any) { c.hostPodChanged(obj, true) }}})
}

// hostChanged enqueues the copy of a host object that changed or went, if this member has one.
func (c *Controller) hostChanged(kind string, obj any) {
	o, err := metaOf(obj)
	if err != nil {
		return
	}
	if _, ok := c.copyOf(kind, o.GetNamespace(), o.GetName()); ok {
		k := key(kind, o.GetNamespace(), o.GetName())
		c.changed.LoadOrStore(k, time.Now())
		c.r.Enqueue(k)
	}
}

// hostPodChanged enqueues the copies a pod of this node used once it is being deleted, done or gone: they may be
// unused now.
func (c *Controller) hostPodChanged(obj any, gone bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName != c.cfg.Owner.NodeName || !gone && live(p) && p.DeletionTimestamp == nil {
		return
	}
	cms, secrets := c.references(p)
	for _, name := range cms {
		c.r.Enqueue(key(kindConfigMap, p.Namespace, name))
	}
	for _, name := range secrets {
		c.r.Enqueue(key(kindSecret, p.Namespace, name))
	}
	if sa := p.Spec.ServiceAccountName; sa != "" && sa != "default" {
		c.r.Enqueue(key(kindServiceAccount, p.Namespace, sa))
	}
}

// references are the ConfigMaps and Secrets a host pod uses: its own references and the image pull Secrets of its
// ServiceAccount.
func (c *Controller) references(p *corev1.Pod) (cms, secrets []string) {
	cmRefs, secretRefs := forge.PodReferences(&p.Spec)
	for _, r := range cmRefs {
		cms = append(cms, r.Name)
	}
	for _, r := range secretRefs {
		secrets = append(secrets, r.Name)
	}
	if sa := p.Spec.ServiceAccountName; sa != "" && sa != "default" {
		if src, err := c.hostSAs.ServiceAccounts(p.Namespace).Get(sa); err == nil {
			for _, r := range src.ImagePullSecrets {
				secrets = append(secrets, r.Name)
			}
		}
	}
	return cms, secrets
}

// keys are every copy this node owns: the periodic pass.
func (c *Controller) keys() []string {
	var out []string
	for kind, inf := range map[string]cache.SharedIndexInformer{kindConfigMap: c.cfg.ConfigMaps, kindServiceAccount: c.cfg.ServiceAccounts} {
		for _, k := range inf.GetStore().ListKeys() {
			if _, name, _ := strings.Cut(k, "/"); kind == kindConfigMap && name == c.cfg.Secrets.RecordName() {
				continue
			}
			out = append(out, kind+"/"+k)
		}
	}
	for _, k := range c.cfg.Secrets.Keys() {
		out = append(out, kindSecret+"/"+k)
	}
	for _, ns := range c.cfg.Secrets.EmptyRecords() {
		out = append(out, key(kindRecord, ns, ""))
	}
	return out
}

func key(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

func (c *Controller) sync(ctx context.Context, k string) error {
	kind, ns, name, ok := splitKey(k)
	if !ok {
		return nil
	}
	switch kind {
	case kindConfigMap:
		return c.syncConfigMap(ctx, k, ns, name)
	case kindSecret:
		return c.syncSecret(ctx, k, ns, name)
	case kindServiceAccount:
		return c.syncServiceAccount(ctx, k, ns, name)
	case kindRecord:
		return c.cfg.Secrets.DropRecordIfEmpty(ctx, ns)
	}
	return nil
}

func (c *Controller) syncServiceAccount(ctx context.Context, k, ns, name string) error {
	sas := c.cfg.Client.CoreV1().ServiceAccounts(ns)
	have, err := c.sas.ServiceAccounts(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	src, err := c.hostSAs.ServiceAccounts(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	users := c.users(kindServiceAccount, ns, name)
	var want *corev1.ServiceAccount
	if src != nil && name != "default" && len(users) > 0 {
		want = forge.ServiceAccount(src, c.cfg.Owner)
	}
	create := func() error {
		_, err := sas.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	switch {
	case have != nil && !c.cfg.Owner.Owns(have):
		return nil
	case have == nil && want == nil:
		c.unused.Delete(k)
		return nil
	case have == nil:
		return c.created(ctx, k, users, create())
	case want == nil:
		return c.collect(ctx, k, func() error {
			return controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return sas.Delete(ctx, name, o) })
		})
	}
	c.unused.Delete(k)
	switch forge.ServiceAccountAction(have, want) {
	case forge.CopyUpdate:
		up := have.DeepCopy()
		up.Labels, up.Annotations = want.Labels, want.Annotations
		up.AutomountServiceAccountToken, up.ImagePullSecrets = want.AutomountServiceAccountToken, want.ImagePullSecrets
		_, err := sas.Update(ctx, up, metav1.UpdateOptions{})
		// Its image pull Secrets follow with it.
		for _, r := range want.ImagePullSecrets {
			c.r.Enqueue(key(kindSecret, ns, r.Name))
		}
		return c.written(k, err)
	case forge.CopyReplace:
		if err := controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return sas.Delete(ctx, name, o) }); err != nil {
			return err
		}
		return c.created(ctx, k, users, create())
	}
	c.changed.Delete(k)
	return nil
}

func (c *Controller) syncConfigMap(ctx context.Context, k, ns, name string) error {
	if name == c.cfg.Secrets.RecordName() {
		c.conflict(k, c.users(kindConfigMap, ns, name)) // the record of the Secret copies: never a copy
		return nil
	}
	cms := c.cfg.Client.CoreV1().ConfigMaps(ns)
	have, err := c.configMaps.ConfigMaps(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	src, err := c.hostConfigMaps.ConfigMaps(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	users := c.users(kindConfigMap, ns, name)
	var want *corev1.ConfigMap
	if src != nil && len(users) > 0 {
		want = forge.ConfigMap(src, c.cfg.Owner)
	}
	create := func() error {
		_, err := cms.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	switch {
	case have != nil && !c.cfg.Owner.Owns(have):
		return nil // the cache holds owned copies only; never anything else
	case have == nil && want == nil:
		c.unused.Delete(k)
		return nil
	case have == nil:
		return c.created(ctx, k, users, create())
	case want == nil:
		return c.collect(ctx, k, func() error {
			return controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return cms.Delete(ctx, name, o) })
		})
	}
	c.unused.Delete(k)
	switch forge.ConfigMapAction(have, want) {
	case forge.CopyUpdate:
		up := have.DeepCopy()
		up.Labels, up.Annotations, up.Data, up.BinaryData, up.Immutable = want.Labels, want.Annotations, want.Data, want.BinaryData, want.Immutable
		_, err := cms.Update(ctx, up, metav1.UpdateOptions{})
		return c.written(k, err)
	case forge.CopyReplace:
		if err := controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return cms.Delete(ctx, name, o) }); err != nil {
			return err
		}
		return c.created(ctx, k, users, create())
	}
	c.changed.Delete(k)
	return nil
}

func (c *Controller) syncSecret(ctx context.Context, k, ns, name string) error {
	_, recorded := c.cfg.Secrets.Entry(ns, name)
	src, err := c.hostSecrets.Secrets(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	users := c.users(kindSecret, ns, name)
	var want *corev1.Secret
	if src != nil && src.Type != corev1.SecretTypeServiceAccountToken && len(users) > 0 {
		want = forge.Secret(src, c.cfg.Owner)
	}
	switch {
	case want == nil && !recorded:
		c.unused.Delete(k)
		return nil
	case want == nil:
		return c.collect(ctx, k, func() error { return c.cfg.Secrets.Delete(ctx, ns, name) })
	}
	c.unused.Delete(k)
	written, err := c.cfg.Secrets.Ensure(ctx, want)
	if errors.Is(err, ErrNotOurs) {
		c.conflict(k, users)
		return nil
	}
	if written || err != nil {
		return c.written(k, err)
	}
	c.changed.Delete(k)
	return nil
}

// collect deletes a copy nothing uses once it has been unused for the grace period (del: with a UID precondition).
func (c *Controller) collect(ctx context.Context, k string, del func() error) error {
	at, _ := c.unused.LoadOrStore(k, time.Now())
	if left := c.cfg.Grace - time.Since(at.(time.Time)); left > 0 {
		c.r.EnqueueAfter(k, left)
		return nil
	}
	if err := del(); err != nil {
		return err
	}
	c.unused.Delete(k)
	c.changed.Delete(k)
	return ctx.Err()
}

// created handles the result of a create: an object of that name that is not Tether's is a conflict, reported on
// the pods that would use it (the member object is left as it is, and the key is not retried: the periodic pass
// looks again).
func (c *Controller) created(ctx context.Context, k string, users []*corev1.Pod, err error) error {
	if apierrors.IsAlreadyExists(err) {
		owned, gerr := c.liveOwned(ctx, k)
		if gerr != nil || owned {
			return gerr // ours, and the cache lags; or ask again
		}
		c.conflict(k, users)
		return nil
	}
	return c.written(k, err)
}

// conflict reports, on the pods that would use it, a member object of key's name that is not Tether's.
func (c *Controller) conflict(k string, users []*corev1.Pod) {
	kind, ns, name, _ := splitKey(k)
	msg := fmt.Sprintf("member %s already has %s %s/%s that Tether does not own; it is left untouched", c.cfg.Member, kind, ns, name)
	for _, p := range users {
		c.cfg.Recorder.Event(p, corev1.EventTypeWarning, ReasonCopyConflict, msg)
	}
}

// liveOwned reads the member object of key from the member apiserver (a create found one the cache does not
// hold) and tells whether Tether owns it.
func (c *Controller) liveOwned(ctx context.Context, k string) (bool, error) {
	kind, ns, name, _ := splitKey(k)
	var (
		o   metav1.Object
		err error
	)
	switch kind {
	case kindConfigMap:
		o, err = c.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	default:
		o, err = c.cfg.Client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return false, fmt.Errorf("member %s %s/%s: gone again", kind, ns, name)
	}
	if err != nil {
		return false, err
	}
	return c.cfg.Owner.Owns(o), nil
}

func (c *Controller) written(k string, err error) error {
	if err != nil {
		return fmt.Errorf("write member copy %s: %w", k, err)
	}
	if at, ok := c.changed.LoadAndDelete(k); ok {
		c.cfg.Metrics.ObserveLag(Name, c.cfg.Member, at.(time.Time))
	}
	return nil
}

// users are the live host pods of this node that use the object.
func (c *Controller) users(kind, ns, name string) []*corev1.Pod {
	pods, err := c.hostPods.Pods(ns).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName != c.cfg.Owner.NodeName || !live(p) {
			continue
		}
		if kind == kindServiceAccount {
			if p.Spec.ServiceAccountName == name {
				out = append(out, p)
			}
			continue
		}
		cms, secrets := c.references(p)
		refs := cms
		if kind == kindSecret {
			refs = secrets
		}
		if slices.Contains(refs, name) {
			out = append(out, p)
		}
	}
	return out
}

// live: a pod that has not finished; one being deleted still runs in the member until its copy is gone.
func live(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (c *Controller) copyOf(kind, ns, name string) (metav1.Object, bool) {
	var (
		o   metav1.Object
		err error
	)
	switch kind {
	case kindConfigMap:
		o, err = c.configMaps.ConfigMaps(ns).Get(name)
	case kindSecret:
		_, ok := c.cfg.Secrets.Entry(ns, name)
		return nil, ok
	case kindServiceAccount:
		o, err = c.sas.ServiceAccounts(ns).Get(name)
	default:
		return nil, false
	}
	if err != nil || !c.cfg.Owner.Owns(o) {
		return nil, false
	}
	return o, true
}

// isRecord: a member ConfigMap that is the record of the Secret copies, not a copy.
func (c *Controller) isRecord(kind string, o metav1.Object) bool {
	return kind == kindConfigMap && o.GetName() == c.cfg.Secrets.RecordName()
}

func metaOf(obj any) (metav1.Object, error) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("not an object: %T", obj)
	}
	return o, nil
}

func splitKey(k string) (kind, ns, name string, ok bool) {
	parts := strings.SplitN(k, "/", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
