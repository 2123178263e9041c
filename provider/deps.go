package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/controllers"
	"github.com/tetherkube/tether/controllers/copies"
	"github.com/tetherkube/tether/provider/forge"
)

// rootCAConfigMap is published in every namespace by each cluster itself: never copied.
const rootCAConfigMap = "kube-root-ca.crt"

// ensureDependencies creates or refreshes, in the member, what the member pod needs: its namespace, its
// ServiceAccount and every ConfigMap and Secret it references, as copies this node owns. A missing optional
// reference is skipped; a missing required one is an error naming it (the pod controller retries).
func (m *Member) ensureDependencies(ctx context.Context, host, member *corev1.Pod) error {
	if err := m.ensureNamespace(ctx, member.Namespace); err != nil {
		return err
	}
	if f := m.beforeFirstPod.Load(); f != nil && *f != nil {
		if _, seen := m.seenNamespaces.Load(member.Namespace); !seen {
			if err := (*f)(ctx, member.Namespace); err != nil {
				return err
			}
			m.seenNamespaces.Store(member.Namespace, struct{}{})
		}
	}
	if sa := member.Spec.ServiceAccountName; sa != "" && sa != "default" {
		if err := m.ensureServiceAccount(ctx, host, sa); err != nil {
			return err
		}
	}
	cms, secrets := forge.PodReferences(&host.Spec)
	var missing []string
	for _, ref := range cms {
		if ref.Name == rootCAConfigMap {
			continue
		}
		src, err := m.cfg.HostConfigMaps.ConfigMaps(host.Namespace).Get(ref.Name)
		if apierrors.IsNotFound(err) {
			if !ref.Optional {
				missing = append(missing, "configmap/"+ref.Name)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := m.ensureConfigMap(ctx, host, src); err != nil {
			return err
		}
	}
	for _, ref := range secrets {
		src, err := m.cfg.HostSecrets.Secrets(host.Namespace).Get(ref.Name)
		if apierrors.IsNotFound(err) {
			if !ref.Optional {
				missing = append(missing, "secret/"+ref.Name)
			}
			continue
		}
		if err != nil {
			return err
		}
		if src.Type == corev1.SecretTypeServiceAccountToken {
			continue // the host's token means nothing in the member
		}
		if err := m.ensureSecret(ctx, host, src); err != nil {
			return err
		}
	}
	for _, name := range forge.ClaimNames(host) {
		miss, err := m.ensureClaim(ctx, host, name)
		if err != nil {
			return err
		}
		if miss {
			missing = append(missing, "persistentvolumeclaim/"+name)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("waiting for %v in the host namespace %s", missing, host.Namespace)
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonMissingDependency, msg)
		return errors.New(msg)
	}
	return nil
}

func (m *Member) ensureNamespace(ctx context.Context, name string) error {
	if _, err := m.namespaces.Get(name); err == nil {
		return nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: m.cfg.ClusterID,
	}}}
	_, err := m.cfg.MemberClient.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create member namespace %s: %w", name, err)
	}
	// Created here: its quota counts the Secrets in it, for the namespace controller (controllers/namespaces),
	// which may not list them. Without it the namespace is kept, never deleted on a guess.
	if err := controllers.EnsureObjectCountQuota(ctx, m.cfg.MemberClient, name, m.owner); err != nil {
		log.G(ctx).WithField("namespace", name).WithError(err).Warn("member namespace without its object count quota: it will be kept")
	}
	return nil
}

func (m *Member) ensureServiceAccount(ctx context.Context, host *corev1.Pod, name string) error {
	src, err := m.cfg.HostSAs.ServiceAccounts(host.Namespace).Get(name)
	if err != nil {
		return fmt.Errorf("service account %s/%s: %w", host.Namespace, name, err)
	}
	// The cache holds owned copies only; Owns is checked again so that nothing else can ever pass for one. An
	// existing copy is the copy controller's to keep in step.
	if have, err := m.sas.ServiceAccounts(host.Namespace).Get(name); err == nil && m.owner.Owns(have) {
		return nil
	}
	// Its image pull Secrets first: the member's admission gives them to the pod.
	for _, ref := range src.ImagePullSecrets {
		secret, err := m.cfg.HostSecrets.Secrets(host.Namespace).Get(ref.Name)
		if apierrors.IsNotFound(err) {
			continue // as on any cluster: the pull fails, the pod says so
		}
		if err != nil {
			return err
		}
		if secret.Type == corev1.SecretTypeServiceAccountToken {
			continue
		}
		if err := m.ensureSecret(ctx, host, secret); err != nil {
			return err
		}
	}
	want := forge.ServiceAccount(src, m.owner)
	sas := m.cfg.MemberClient.CoreV1().ServiceAccounts(host.Namespace)
	return m.createCopy(ctx, host, "serviceaccount", name, func() error {
		_, err := sas.Create(ctx, want, metav1.CreateOptions{})
		return err
	}, func() (metav1.Object, error) { return sas.Get(ctx, name, metav1.GetOptions{}) })
}

// ensureConfigMap makes the copy current before the pod starts (a container reads its environment once); later
// changes are the copy controller's (controllers/copies).
func (m *Member) ensureConfigMap(ctx context.Context, host *corev1.Pod, src *corev1.ConfigMap) error {
	if src.Name == m.secretCopies.RecordName() {
		msg := fmt.Sprintf("configmap %s/%s: the name of Tether's record of Secret copies in member %s; the pod waits", host.Namespace, src.Name, m.cfg.Member)
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonDependencyConflict, msg)
		return errors.New(msg)
	}
	want := forge.ConfigMap(src, m.owner)
	cms := m.cfg.MemberClient.CoreV1().ConfigMaps(src.Namespace)
	create := func() error {
		_, err := cms.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	get := func() (metav1.Object, error) { return cms.Get(ctx, src.Name, metav1.GetOptions{}) }
	have, err := m.configMaps.ConfigMaps(src.Namespace).Get(src.Name)
	if err != nil || !m.owner.Owns(have) {
		return m.createCopy(ctx, host, "configmap", src.Name, create, get)
	}
	switch forge.ConfigMapAction(have, want) {
	case forge.CopyUpdate:
		up := have.DeepCopy()
		up.Labels, up.Annotations, up.Data, up.BinaryData, up.Immutable = want.Labels, want.Annotations, want.Data, want.BinaryData, want.Immutable
		_, err = cms.Update(ctx, up, metav1.UpdateOptions{})
		return err
	case forge.CopyReplace:
		if err := controllers.DeleteOwned(have, func(o metav1.DeleteOptions) error { return cms.Delete(ctx, src.Name, o) }); err != nil {
			return err
		}
		return m.createCopy(ctx, host, "configmap", src.Name, create, get)
	}
	return nil
}

// ensureSecret makes the Secret copy current before the pod starts. tether-node writes Secrets in a member
// without reading them (copies.SecretCopies); a Secret of that name that is not its copy is a conflict.
func (m *Member) ensureSecret(ctx context.Context, host *corev1.Pod, src *corev1.Secret) error {
	_, err := m.secretCopies.Ensure(ctx, forge.Secret(src, m.owner))
	if errors.Is(err, copies.ErrNotOurs) {
		msg := fmt.Sprintf("member %s already has secret %s/%s that Tether does not own; it is left untouched and the pod waits", m.cfg.Member, host.Namespace, src.Name)
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonDependencyConflict, msg)
		return errors.New(msg)
	}
	if err != nil {
		return fmt.Errorf("copy secret %s/%s to member %s: %w", host.Namespace, src.Name, m.cfg.Member, err)
	}
	return nil
}

// ensureClaim makes sure the member has the copy of a claim the pod uses (controllers/volumes keeps it after);
// missing reports a claim the host does not have. A claim whose volume Tether provisioned in another member is an
// error: its data lives there (the host scheduler keeps such pods off this node; a pod bound by hand is not).
func (m *Member) ensureClaim(ctx context.Context, host *corev1.Pod, name string) (missing bool, err error) {
	if m.cfg.HostClaims == nil {
		return false, fmt.Errorf("persistentvolumeclaim %s: tether-node does not serve claims here", name)
	}
	src, err := m.cfg.HostClaims.PersistentVolumeClaims(host.Namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if src.Spec.VolumeName != "" && m.cfg.HostVolumes != nil {
		if pv, err := m.cfg.HostVolumes.Get(src.Spec.VolumeName); err == nil {
			if other := forge.VolumeMember(pv); other != "" && other != m.cfg.Member {
				msg := fmt.Sprintf("persistentvolumeclaim %s/%s lives in member %s: the pod cannot run in member %s", host.Namespace, name, other, m.cfg.Member)
				m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonDependencyConflict, msg)
				return false, errors.New(msg)
			}
		}
	}
	if have, err := m.claims.PersistentVolumeClaims(host.Namespace).Get(name); err == nil && m.owner.Owns(have) {
		if have.Annotations[api.AnnotationHostUID] != string(src.UID) {
			return false, fmt.Errorf("persistentvolumeclaim %s/%s: the copy of an earlier claim of that name is still in member %s", host.Namespace, name, m.cfg.Member)
		}
		return false, nil
	}
	var sc *storagev1.StorageClass
	if cls := src.Spec.StorageClassName; cls != nil && *cls != "" && m.cfg.HostClasses != nil {
		if sc, err = m.cfg.HostClasses.Get(*cls); err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
	}
	want := forge.PersistentVolumeClaim(src, forge.MemberClassName(src, sc), m.owner)
	claims := m.cfg.MemberClient.CoreV1().PersistentVolumeClaims(host.Namespace)
	return false, m.createCopy(ctx, host, "persistentvolumeclaim", name, func() error {
		_, err := claims.Create(ctx, want, metav1.CreateOptions{})
		return err
	}, func() (metav1.Object, error) { return claims.Get(ctx, name, metav1.GetOptions{}) })
}

// createCopy creates an owned copy. An object of that name that the cache of owned copies does not hold is either
// one of ours being created (a race with ourselves: fine) or not Tether's: then the pod must not use it, since it
// would run with a member's own ServiceAccount or read a member's own Secret. That is a conflict, reported on the
// host pod; the member object is left untouched and the pod waits.
func (m *Member) createCopy(ctx context.Context, host *corev1.Pod, kind, name string, create func() error, get func() (metav1.Object, error)) error {
	err := create()
	if apierrors.IsAlreadyExists(err) {
		have, gerr := get()
		if gerr != nil {
			return fmt.Errorf("read member %s %s/%s: %w", kind, host.Namespace, name, gerr)
		}
		if m.owner.Owns(have) {
			return nil
		}
		msg := fmt.Sprintf("member %s already has %s %s/%s that Tether does not own; it is left untouched and the pod waits", m.cfg.Member, kind, host.Namespace, name)
		m.cfg.Recorder.Event(host, corev1.EventTypeWarning, ReasonDependencyConflict, msg)
		return errors.New(msg)
	}
	if err != nil {
		return fmt.Errorf("copy %s %s/%s to member %s: %w", kind, host.Namespace, name, m.cfg.Member, err)
	}
	return nil
}
