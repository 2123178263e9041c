package forge

import (
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
)

// annProvisionedBy names, on a PersistentVolume, the provisioner that made it: the host's volume controller then
// leaves the volume's deletion to that provisioner.
const annProvisionedBy = "pv.kubernetes.io/provisioned-by"

// IsTetherClass reports whether a StorageClass is one of Tether's: its claims live in a member.
func IsTetherClass(sc *storagev1.StorageClass) bool {
	return sc != nil && sc.Provisioner == api.Provisioner
}

// MemberClassName is the storageClassName of the member copy of a claim of class sc: for a class of Tether's its
// memberStorageClassName parameter (absent: nil, the member's default class); for any other class, or none,
// the host claim's own storageClassName (the same name in the member).
func MemberClassName(claim *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) *string {
	if IsTetherClass(sc) {
		if v, ok := sc.Parameters[api.StorageClassParamMemberClass]; ok {
			return &v
		}
		return nil
	}
	return claim.Spec.StorageClassName
}

// PersistentVolumeClaim is the member copy of a host claim: what it asks for (access modes, size, volume mode),
// in the member's storage class; no volumeName, selector or data source, which name host objects — the member
// binds it as it would any claim.
func PersistentVolumeClaim(src *corev1.PersistentVolumeClaim, class *string, owner api.Owner) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: CopyMeta(src, owner),
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      src.Spec.AccessModes,
			Resources:        corev1.VolumeResourceRequirements{Requests: src.Spec.Resources.Requests, Limits: src.Spec.Resources.Limits},
			VolumeMode:       src.Spec.VolumeMode,
			StorageClassName: class,
		},
	}
}

// HostVolume is the host PersistentVolume that stands for a claim of a Tether class whose copy lives in member:
// pre-bound to the claim, as large as it asks, with a node affinity that only member's virtual node matches.
// Its source is a placeholder (a local path that no kubelet mounts: only the virtual node runs its pods), and it
// names Tether as its provisioner, so that the host's volume controller leaves its deletion to Tether.
func HostVolume(claim *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass, member string, owner api.Owner) *corev1.PersistentVolume {
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	className := sc.Name
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        api.HostVolumeName(string(claim.UID)),
			Labels:      owner.Labels(),
			Annotations: map[string]string{annProvisionedBy: api.Provisioner, api.AnnotationHostUID: string(claim.UID)},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: claim.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			StorageClassName:              className,
			PersistentVolumeReclaimPolicy: reclaim,
			MountOptions:                  sc.MountOptions,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: "/" + member + "/" + claim.Namespace + "/" + claim.Name},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: api.LabelMember, Operator: corev1.NodeSelectorOpIn, Values: []string{member}}},
			}}}},
		},
	}
}

// VolumeMember is the member a host PersistentVolume of Tether's stands for ("" for any other volume).
func VolumeMember(pv *corev1.PersistentVolume) string {
	if pv.Annotations[annProvisionedBy] != api.Provisioner || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, t := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, r := range t.MatchExpressions {
			if r.Key == api.LabelMember && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
				return r.Values[0]
			}
		}
	}
	return ""
}

// ClaimNames are the PersistentVolumeClaims a pod's volumes name. Generic ephemeral volumes are not among them:
// the member pod keeps its volume template, and the member makes its own claim from it.
func ClaimNames(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}
