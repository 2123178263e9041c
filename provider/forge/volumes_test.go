package forge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

func hostClaim(class string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop", UID: "claim-uid", Labels: map[string]string{"app": "db"},
			Annotations: map[string]string{"volume.kubernetes.io/selected-node": "tether-m1"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
			StorageClassName: ptr.To(class),
			VolumeName:       "host-volume",
			Selector:         &metav1.LabelSelector{MatchLabels: map[string]string{"disk": "fast"}},
			DataSource:       &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "seed"},
		},
	}
}

func tetherClass(params map[string]string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "tether"}, Provisioner: api.Provisioner, Parameters: params}
}

func TestMemberClassName(t *testing.T) {
	other := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "ebs.csi.aws.com"}
	for _, tc := range []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		sc    *storagev1.StorageClass
		want  *string
	}{
		{"tether class with a member class", hostClaim("tether"), tetherClass(map[string]string{api.StorageClassParamMemberClass: "local-path"}), ptr.To("local-path")},
		{"tether class with an empty member class: no class", hostClaim("tether"), tetherClass(map[string]string{api.StorageClassParamMemberClass: ""}), ptr.To("")},
		{"tether class without one: the member's default", hostClaim("tether"), tetherClass(nil), nil},
		{"another class: the same name", hostClaim("fast"), other, ptr.To("fast")},
		{"a class the host does not have: the same name", hostClaim("gone"), nil, ptr.To("gone")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, MemberClassName(tc.claim, tc.sc)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPersistentVolumeClaimCopy(t *testing.T) {
	got := PersistentVolumeClaim(hostClaim("tether"), ptr.To("local-path"), copyOwner)
	want := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop",
			Labels:      map[string]string{"app": "db", api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: "host-1", api.LabelNode: "tether-m1"},
			Annotations: map[string]string{api.AnnotationHostUID: "claim-uid"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
			StorageClassName: ptr.To("local-path"),
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("copy (-want +got):\n%s", diff)
	}
}

func TestHostVolume(t *testing.T) {
	sc := tetherClass(nil)
	sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRetain)
	claim := hostClaim("tether")
	pv := HostVolume(claim, sc, "m1", copyOwner)
	if pv.Name != "pvc-claim-uid" || !copyOwner.Owns(pv) || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain ||
		pv.Spec.StorageClassName != "tether" || pv.Spec.Capacity.Storage().String() != "5Gi" {
		t.Errorf("volume %+v", pv)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != "shop" || ref.Name != "data" || ref.UID != "claim-uid" {
		t.Errorf("claimRef %+v", ref)
	}
	if got := VolumeMember(pv); got != "m1" {
		t.Errorf("VolumeMember = %q, want m1", got)
	}
	// Only the member's virtual node matches the volume's affinity.
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if diff := cmp.Diff([]corev1.NodeSelectorRequirement{{Key: api.LabelMember, Operator: corev1.NodeSelectorOpIn, Values: []string{"m1"}}}, terms[0].MatchExpressions); len(terms) != 1 || diff != "" {
		t.Errorf("node affinity %+v", terms)
	}
	if got := VolumeMember(&corev1.PersistentVolume{}); got != "" {
		t.Errorf("VolumeMember of another volume = %q", got)
	}
	if got := HostVolume(claim, tetherClass(nil), "m1", copyOwner); got.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("default reclaim policy %s", got.Spec.PersistentVolumeReclaimPolicy)
	}
}

func TestClaimNames(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-db-0"}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
		{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
	}}}
	if diff := cmp.Diff([]string{"data-db-0"}, ClaimNames(pod)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
