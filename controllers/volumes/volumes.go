// Package volumes gives offloaded pods their PersistentVolumeClaims. A claim a pod on this member uses has an
// owned copy in the member (what it asks for, without volumeName: the member's own provisioner or a static volume
// there binds it), and the host claim says where its data lives (api.AnnotationMemberVolume).
//
// Claims of a Tether StorageClass (provisioner api.Provisioner, WaitForFirstConsumer) are provisioned here: once
// the host scheduler has picked this member's virtual node for the claim's first pod (the claim's selected-node
// annotation), the controller creates the member copy and a host PersistentVolume bound to the claim, whose node
// affinity only this virtual node matches — so the pod is bound, and every later pod of the claim is placed on this
// member by the host scheduler itself. When the host claim goes, the copy goes (the member keeps it while a member
// pod still uses it), then the host volume; a class with reclaimPolicy Retain keeps both.
package volumes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/provider/forge"
)

// Name is the controller's name in logs and metrics.
const Name = "volumes"

// Event reasons on host claims.
const (
	// ReasonProvisioned: the claim's copy and its host volume were created for this member.
	ReasonProvisioned = "ProvisionedInMember"
	// ReasonVolumeConflict: the member has a claim of that name that Tether does not own; it is left untouched.
	ReasonVolumeConflict = "MemberObjectConflict"
	// ReasonDeniedNamespace: the claim is in a namespace Tether does not use in members.
	ReasonDeniedNamespace = "DeniedNamespace"
)

// annSelectedNode is where the host scheduler writes the node it picked for a claim's first pod.
const annSelectedNode = "volume.kubernetes.io/selected-node"

const (
	kindClaim  = "claim"
	kindVolume = "volume"
)

// Config is what the controller of one member needs.
type Config struct {
	Member string
	Owner  api.Owner
	// Client writes to the member; Host to the host (volumes, the claims' annotation).
	Client, Host kubernetes.Interface
	// Host informers, shared by every member: claims, and the volumes Tether provisioned for this host cluster.
	// The controller adds its handlers in Run and removes them when Run returns.
	HostClaims, HostVolumes cache.SharedIndexInformer
	HostClasses             storagelisters.StorageClassLister
	// Claims is the member informer of the claim copies this node owns.
	Claims cache.SharedIndexInformer
	// EnsureNamespace creates the member namespace of a copy (with Tether's labels) if it is missing.
	EnsureNamespace func(ctx context.Context, ns string) error
	// Recorder writes events on host claims.
	Recorder         record.EventRecorder
	DeniedNamespaces []string
	Resync           time.Duration
	Metrics          *controllers.Metrics
}

// Controller is the claim controller of one member.
type Controller struct {
	cfg         Config
	r           *controllers.Reconciler
	hostClaims  corev1listers.PersistentVolumeClaimLister
	hostVolumes corev1listers.PersistentVolumeLister
	claims      corev1listers.PersistentVolumeClaimLister

	mu      sync.Mutex
	changed map[string]time.Time // key → first host change not yet applied
}

// New builds the controller; Run runs it and must be called.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Host == nil || cfg.HostClaims == nil || cfg.HostVolumes == nil || cfg.HostClasses == nil ||
		cfg.Claims == nil || cfg.EnsureNamespace == nil || cfg.Recorder == nil {
		return nil, errors.New("volumes: clients, informers, namespace hook and recorder must be set")
	}
	c := &Controller{
		cfg:         cfg,
		hostClaims:  corev1listers.NewPersistentVolumeClaimLister(cfg.HostClaims.GetIndexer()),
		hostVolumes: corev1listers.NewPersistentVolumeLister(cfg.HostVolumes.GetIndexer()),
		claims:      corev1listers.NewPersistentVolumeClaimLister(cfg.Claims.GetIndexer()),
		changed:     map[string]time.Time{},
	}
	c.r = controllers.New(c.sync, controllers.Options{Name: Name, Member: cfg.Member, Keys: c.keys, Resync: cfg.Resync, Metrics: cfg.Metrics})
	return c, nil
}

// Run works until ctx ends. The informers must have synced.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return c.r.RunWith(ctx, workers,
		controllers.Handler{Informer: c.cfg.HostClaims, Handler: controllers.OnEvery(c.hostClaim)},
		controllers.Handler{Informer: c.cfg.HostVolumes, Handler: controllers.OnEvery(c.hostVolume)},
		controllers.Handler{Informer: c.cfg.Claims, Handler: controllers.OnEvery(c.memberClaim)})
}

// hostClaim enqueues a host claim that concerns this member: picked for it, bound to a volume of it, or copied to it.
func (c *Controller) hostClaim(obj any) {
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	if !c.concerns(pvc) {
		if _, err := c.claims.PersistentVolumeClaims(pvc.Namespace).Get(pvc.Name); err != nil {
			return
		}
	}
	k := kindClaim + "/" + pvc.Namespace + "/" + pvc.Name
	c.mu.Lock()
	if _, ok := c.changed[k]; !ok {
		c.changed[k] = time.Now()
	}
	c.mu.Unlock()
	c.r.Enqueue(k)
}

func (c *Controller) hostVolume(obj any) {
	if pv, ok := obj.(*corev1.PersistentVolume); ok && c.cfg.Owner.Owns(pv) {
		c.r.Enqueue(kindVolume + "/" + pv.Name)
		if ref := pv.Spec.ClaimRef; ref != nil {
			c.r.Enqueue(kindClaim + "/" + ref.Namespace + "/" + ref.Name)
		}
	}
}

func (c *Controller) memberClaim(obj any) {
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	c.r.Enqueue(kindClaim + "/" + pvc.Namespace + "/" + pvc.Name)
	if uid := pvc.Annotations[api.AnnotationHostUID]; uid != "" {
		c.r.Enqueue(kindVolume + "/" + api.HostVolumeName(uid))
	}
}

// concerns reports whether the host claim was picked for this member by the host scheduler, or is bound to a
// volume Tether provisioned for it.
func (c *Controller) concerns(pvc *corev1.PersistentVolumeClaim) bool {
	if pvc.Annotations[annSelectedNode] == c.cfg.Owner.NodeName {
		return true
	}
	if pvc.Spec.VolumeName == "" {
		return false
	}
	pv, err := c.hostVolumes.Get(pvc.Spec.VolumeName)
	return err == nil && c.cfg.Owner.Owns(pv)
}

func (c *Controller) keys() []string {
	out := controllers.Keys(kindClaim, c.cfg.Claims.GetStore())
	for _, obj := range c.cfg.HostVolumes.GetStore().List() {
		if pv, ok := obj.(*corev1.PersistentVolume); ok && c.cfg.Owner.Owns(pv) {
			out = append(out, kindVolume+"/"+pv.Name)
		}
	}
	return out
}

func (c *Controller) sync(ctx context.Context, k string) error {
	kind, rest, _ := strings.Cut(k, "/")
	if kind == kindVolume {
		return c.syncVolume(ctx, rest)
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok {
		return nil
	}
	err := c.syncClaim(ctx, ns, name)
	if err == nil {
		c.mu.Lock()
		at, ok := c.changed[k]
		delete(c.changed, k)
		c.mu.Unlock()
		if ok {
			c.cfg.Metrics.ObserveLag(Name, c.cfg.Member, at)
		}
	}
	return err
}

func (c *Controller) syncClaim(ctx context.Context, ns, name string) error {
	claims := c.cfg.Client.CoreV1().PersistentVolumeClaims(ns)
	have, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if have != nil && !c.cfg.Owner.Owns(have) {
		have = nil
	}
	host, err := c.hostClaims.PersistentVolumeClaims(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if host != nil && have != nil && have.Annotations[api.AnnotationHostUID] != string(host.UID) {
		host = nil // the copy is of an earlier claim of that name: it goes as if its claim were gone
	}
	if host == nil {
		if have == nil || have.DeletionTimestamp != nil || c.retained(have) {
			return nil
		}
		return controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return claims.Delete(ctx, name, o) })
	}
	if have == nil && !c.concerns(host) {
		return nil // the pod path copies claims of other classes when a pod needs them
	}
	if slices.Contains(c.cfg.DeniedNamespaces, ns) {
		c.cfg.Recorder.Eventf(host, corev1.EventTypeWarning, ReasonDeniedNamespace,
			"member %s: namespace %s is not used in members; the claim is not provisioned there", c.cfg.Member, ns)
		return nil
	}
	sc, err := c.class(host)
	if err != nil {
		return err
	}
	if forge.IsTetherClass(sc) && host.Spec.VolumeName == "" && host.DeletionTimestamp == nil &&
		host.Annotations[annSelectedNode] == c.cfg.Owner.NodeName {
		if err := c.provision(ctx, host, have, sc); err != nil {
			return err
		}
		return nil
	}
	if have == nil {
		if host.DeletionTimestamp != nil {
			return nil
		}
		return c.create(ctx, host, sc)
	}
	if err := c.grow(ctx, have, host); err != nil {
		return err
	}
	return c.annotate(ctx, host, have)
}

// retained reports whether a copy whose host claim is gone stays: its host volume has reclaimPolicy Retain.
func (c *Controller) retained(have *corev1.PersistentVolumeClaim) bool {
	pv, err := c.hostVolumes.Get(api.HostVolumeName(have.Annotations[api.AnnotationHostUID]))
	return err == nil && c.cfg.Owner.Owns(pv) && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain
}

func (c *Controller) class(pvc *corev1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == "" {
		return nil, nil
	}
	sc, err := c.cfg.HostClasses.Get(*pvc.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return sc, err
}

// provision creates the copy of a claim of Tether's class that the host scheduler picked this member for, then
// the host volume that binds it.
func (c *Controller) provision(ctx context.Context, host, have *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) error {
	if have == nil {
		if err := c.create(ctx, host, sc); err != nil {
			return err
		}
	}
	if _, err := c.hostVolumes.Get(api.HostVolumeName(string(host.UID))); err == nil {
		return nil
	}
	pv := forge.HostVolume(host, sc, c.cfg.Member, c.cfg.Owner)
	_, err := c.cfg.Host.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create host volume %s for claim %s/%s: %w", pv.Name, host.Namespace, host.Name, err)
	}
	c.cfg.Recorder.Eventf(host, corev1.EventTypeNormal, ReasonProvisioned,
		"claim copied to member %s; host volume %s binds it there, so its pods run on %s", c.cfg.Member, pv.Name, c.cfg.Owner.NodeName)
	return nil
}

// create makes the member copy of a host claim.
func (c *Controller) create(ctx context.Context, host *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) error {
	if err := c.cfg.EnsureNamespace(ctx, host.Namespace); err != nil {
		return err
	}
	want := forge.PersistentVolumeClaim(host, forge.MemberClassName(host, sc), c.cfg.Owner)
	claims := c.cfg.Client.CoreV1().PersistentVolumeClaims(host.Namespace)
	_, err := claims.Create(ctx, want, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("copy claim %s/%s to member %s: %w", host.Namespace, host.Name, c.cfg.Member, err)
		}
		return nil
	}
	got, err := claims.Get(ctx, host.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read member claim %s/%s: %w", host.Namespace, host.Name, err)
	}
	if c.cfg.Owner.Owns(got) {
		return nil // ours, the cache lags
	}
	c.cfg.Recorder.Eventf(host, corev1.EventTypeWarning, ReasonVolumeConflict,
		"member %s already has persistentvolumeclaim %s/%s that Tether does not own; it is left untouched", c.cfg.Member, host.Namespace, host.Name)
	return nil
}

// grow asks the member for more room when the host claim was expanded (a member class that cannot expand refuses:
// the error is retried, and its message names the member's reason).
func (c *Controller) grow(ctx context.Context, have, host *corev1.PersistentVolumeClaim) error {
	want, got := host.Spec.Resources.Requests[corev1.ResourceStorage], have.Spec.Resources.Requests[corev1.ResourceStorage]
	if want.Cmp(got) <= 0 {
		return nil
	}
	up := have.DeepCopy()
	if up.Spec.Resources.Requests == nil {
		up.Spec.Resources.Requests = corev1.ResourceList{}
	}
	up.Spec.Resources.Requests[corev1.ResourceStorage] = want
	if _, err := c.cfg.Client.CoreV1().PersistentVolumeClaims(have.Namespace).Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("expand member claim %s/%s to %s: %w", have.Namespace, have.Name, want.String(), err)
	}
	return nil
}

// annotate writes on the host claim where its copy is bound.
func (c *Controller) annotate(ctx context.Context, host, have *corev1.PersistentVolumeClaim) error {
	if have.Spec.VolumeName == "" {
		return nil
	}
	v := api.MemberVolume(c.cfg.Member, have.Spec.VolumeName)
	if host.Annotations[api.AnnotationMemberVolume] == v {
		return nil
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, api.AnnotationMemberVolume, v)
	_, err := c.cfg.Host.CoreV1().PersistentVolumeClaims(host.Namespace).Patch(ctx, host.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("annotate host claim %s/%s: %w", host.Namespace, host.Name, err)
	}
	return nil
}

// syncVolume deletes a host volume of Tether's whose claim is gone, once the member copy is gone too (the member
// keeps that while a member pod uses it); a volume to retain stays.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, err := c.hostVolumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ref := pv.Spec.ClaimRef
	if !c.cfg.Owner.Owns(pv) || ref == nil || pv.DeletionTimestamp != nil ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	if host, err := c.hostClaims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name); err == nil && host.UID == ref.UID {
		return nil
	} else if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if have, err := c.claims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name); err == nil &&
		c.cfg.Owner.Owns(have) && have.Annotations[api.AnnotationHostUID] == string(ref.UID) {
		// The copy first: its claim key deletes it; its deletion brings this key back.
		c.r.Enqueue(kindClaim + "/" + ref.Namespace + "/" + ref.Name)
		return nil
	}
	err = c.cfg.Host.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pv.UID))})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete host volume %s: %w", name, err)
	}
	return nil
}
