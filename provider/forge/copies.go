package forge

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
)

// CopyMeta is the metadata of a member copy of a host object: its name, namespace and labels with Tether's
// ownership labels over them, and the host object's UID.
func CopyMeta(src metav1.Object, owner api.Owner) metav1.ObjectMeta {
	labels := maps.Clone(src.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, owner.Labels())
	return metav1.ObjectMeta{Name: src.GetName(), Namespace: src.GetNamespace(), Labels: labels,
		Annotations: map[string]string{api.AnnotationHostUID: string(src.GetUID())}}
}

// ConfigMap is the member copy of a host ConfigMap.
func ConfigMap(src *corev1.ConfigMap, owner api.Owner) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: CopyMeta(src, owner), Data: src.Data, BinaryData: src.BinaryData, Immutable: src.Immutable}
}

// Secret is the member copy of a host Secret.
func Secret(src *corev1.Secret, owner api.Owner) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: CopyMeta(src, owner), Data: src.Data, Type: src.Type, Immutable: src.Immutable}
}

// CopyAction is what a member copy needs to match what it should be.
type CopyAction int

const (
	// CopyInStep means nothing to do.
	CopyInStep CopyAction = iota
	// CopyUpdate means: write the wanted content over the copy.
	CopyUpdate
	// CopyReplace means: delete the copy and create it anew — it belongs to an earlier host object of that name, or it
	// is immutable and its content must change (or its type, which a Secret cannot change).
	CopyReplace
	// CopyCreate means: there is no copy; create it.
	CopyCreate
)

// ConfigMapAction compares a copy (have) with what it should be (want).
func ConfigMapAction(have, want *corev1.ConfigMap) CopyAction {
	same := equality.Semantic.DeepEqual(have.Data, want.Data) && equality.Semantic.DeepEqual(have.BinaryData, want.BinaryData) &&
		equality.Semantic.DeepEqual(have.Immutable, want.Immutable)
	return copyAction(have, want, same, nil)
}

func copyAction(have, want metav1.Object, sameContent bool, mustReplace *bool) CopyAction {
	switch {
	case have.GetAnnotations()[api.AnnotationHostUID] != want.GetAnnotations()[api.AnnotationHostUID]:
		return CopyReplace
	case sameContent && equality.Semantic.DeepEqual(have.GetLabels(), want.GetLabels()):
		return CopyInStep
	case mustReplace != nil && *mustReplace:
		return CopyReplace
	case !sameContent && immutable(have):
		return CopyReplace
	}
	return CopyUpdate
}

func immutable(o metav1.Object) bool {
	switch c := o.(type) {
	case *corev1.ConfigMap:
		return c.Immutable != nil && *c.Immutable
	case *corev1.Secret:
		return c.Immutable != nil && *c.Immutable
	}
	return false
}

// ServiceAccount is the member copy of a host ServiceAccount: its labels and annotations, whether tokens are
// mounted, and its image pull Secrets (copied with it). The member issues the pod's token for this copy.
func ServiceAccount(src *corev1.ServiceAccount, owner api.Owner) *corev1.ServiceAccount {
	meta := CopyMeta(src, owner)
	for k, v := range src.Annotations {
		if k != api.AnnotationHostUID {
			meta.Annotations[k] = v
		}
	}
	return &corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: src.AutomountServiceAccountToken,
		ImagePullSecrets: src.ImagePullSecrets}
}

// ServiceAccountAction compares a ServiceAccount copy (have) with what it should be (want). The member's token
// controller may add Secrets of its own: they are not compared.
func ServiceAccountAction(have, want *corev1.ServiceAccount) CopyAction {
	switch {
	case have.Annotations[api.AnnotationHostUID] != want.Annotations[api.AnnotationHostUID]:
		return CopyReplace
	case equality.Semantic.DeepEqual(have.Labels, want.Labels) && equality.Semantic.DeepEqual(have.Annotations, want.Annotations) &&
		equality.Semantic.DeepEqual(have.AutomountServiceAccountToken, want.AutomountServiceAccountToken) &&
		equality.Semantic.DeepEqual(have.ImagePullSecrets, want.ImagePullSecrets):
		return CopyInStep
	}
	return CopyUpdate
}
