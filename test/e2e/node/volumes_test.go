package node_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/test/e2e/framework"
)

// usesClaim mounts PersistentVolumeClaim claim.
func usesClaim(claim string) podSpecOpt {
	return func(s *corev1.PodSpec) {
		s.Volumes = append(s.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	}
}

// prefersMember asks the host scheduler to prefer member's virtual node.
func prefersMember(member string) podSpecOpt {
	return func(s *corev1.PodSpec) {
		s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
			Weight: 100, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: api.LabelMember, Operator: corev1.NodeSelectorOpIn, Values: []string{member}}}},
		}}}}
	}
}

// A claim of a Tether StorageClass whose copy a static volume of m1 binds: the first pod (on m1) gets it bound,
// the host claim says where its data lives, a second pod that prefers m2 still lands on m1, and deleting the claim
// once its pods are gone removes the copy and the host volume.
func TestClaimLivesInItsMember(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1").Client.CoreV1()
	memberClass := "static-" + ns
	// A static volume in m1 of a class only it has (no StorageClass object: the member binds it at once).
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "data-" + ns}, Spec: corev1.PersistentVolumeSpec{
		Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName:              memberClass,
		PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + ns}},
	}}
	if _, err := m1.PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m1.PersistentVolumes().Delete(context.WithoutCancel(ctx), pv.Name, metav1.DeleteOptions{}) })
	// The host class: Tether's provisioner, copies in that member class.
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + ns}, Provisioner: api.Provisioner,
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer), Parameters: map[string]string{api.StorageClassParamMemberClass: memberClass}}
	classes := env.Host.Client.StorageV1().StorageClasses()
	if _, err := classes.Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = classes.Delete(context.WithoutCancel(ctx), sc.Name, metav1.DeleteOptions{}) })
	claims := env.Host.Client.CoreV1().PersistentVolumeClaims(ns)
	claim, err := claims.Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		StorageClassName: &sc.Name,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	runOnM1(t, ns, "first", usesClaim("data"))
	hostVolume := api.HostVolumeName(string(claim.UID))
	framework.Eventually(t, timeout, "host claim bound and annotated with m1's volume", func(ctx context.Context) error {
		c, err := claims.Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c.Spec.VolumeName != hostVolume || c.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("claim %s on %q", c.Status.Phase, c.Spec.VolumeName)
		}
		if want := api.MemberVolume("m1", pv.Name); c.Annotations[api.AnnotationMemberVolume] != want {
			return fmt.Errorf("%s=%q, want %q", api.AnnotationMemberVolume, c.Annotations[api.AnnotationMemberVolume], want)
		}
		return nil
	})
	cp, err := m1.PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Spec.VolumeName != pv.Name || cp.Annotations[api.AnnotationHostUID] != string(claim.UID) || cp.Labels[api.LabelManagedBy] != api.ManagedByTether {
		t.Errorf("member copy on %q, of %q, labels %v", cp.Spec.VolumeName, cp.Annotations[api.AnnotationHostUID], cp.Labels)
	}

	// m2 has more room and the pod prefers it: the claim's volume keeps it on m1.
	pods := env.Host.Client.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "second"},
		Spec: offloadedSpec(usesClaim("data"), prefersMember("m2"))}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.RunningIn(t, ns, "second", "m1")

	// The claim goes with its last pod: the copy, then the host volume; m1's static volume stays (Retain).
	for _, name := range []string{"first", "second"} {
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := claims.Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*timeout, "member copy and host volume gone", func(ctx context.Context) error {
		if _, err := m1.PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("member copy: %v", err)
		}
		if _, err := env.Host.Client.CoreV1().PersistentVolumes().Get(ctx, hostVolume, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("host volume: %v", err)
		}
		return nil
	})
	if got, err := m1.PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); err != nil || got.Status.Phase != corev1.VolumeReleased {
		t.Errorf("m1's static volume: %v, %v", got.Status.Phase, err)
	}
}

// A claim of a class that is not Tether's (here: none, the host binds it to a volume of its own): the pod path
// copies it to the member the pod runs in; a member claim of that name that Tether does not own is a conflict.
func TestClaimOfAnotherClassCopied(t *testing.T) {
	ctx := t.Context()
	ns := env.Host.Namespace(t, nil)
	m1 := env.Member(t, "m1").Client.CoreV1()
	memberClass := "static-" + ns
	// Volumes of that class: both claims' in the host, "plain"'s in m1.
	for _, v := range []struct {
		c    *framework.Cluster
		name string
	}{{env.Host, "plain"}, {env.Host, "taken"}, {env.Member(t, "m1"), "plain"}} {
		c := v.c
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: v.name + "-" + ns}, Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:       memberClass,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + ns}},
			ClaimRef:               &corev1.ObjectReference{Namespace: ns, Name: v.name},
		}}
		client := c.Client.CoreV1().PersistentVolumes()
		if _, err := client.Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Delete(context.WithoutCancel(ctx), pv.Name, metav1.DeleteOptions{}) })
	}
	spec := corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		StorageClassName: &memberClass,
	}
	claims := env.Host.Client.CoreV1().PersistentVolumeClaims(ns)
	for _, name := range []string{"plain", "taken"} {
		if _, err := claims.Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, mp := runOnM1(t, ns, "user", usesClaim("plain"))
	cp, err := m1.PersistentVolumeClaims(ns).Get(ctx, "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Labels[api.LabelManagedBy] != api.ManagedByTether || ptr.Deref(cp.Spec.StorageClassName, "") != memberClass {
		t.Errorf("member copy: labels %v, class %v", cp.Labels, cp.Spec.StorageClassName)
	}
	if mp.Spec.Volumes[0].PersistentVolumeClaim == nil || mp.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "plain" {
		t.Errorf("member pod volumes %+v", mp.Spec.Volumes)
	}

	// "taken" exists in m1 and is not Tether's.
	if _, err := m1.PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "taken"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: spec.AccessModes, Resources: spec.Resources, StorageClassName: ptr.To("none")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Host.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
		Spec: offloadedSpec(onMember("m1"), usesClaim("taken"))}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ns, "intruder", "MemberObjectConflict", "persistentvolumeclaim "+ns+"/taken")
	if got, err := m1.PersistentVolumeClaims(ns).Get(ctx, "taken", metav1.GetOptions{}); err != nil || got.Labels[api.LabelManagedBy] == api.ManagedByTether {
		t.Errorf("unowned member claim changed: %v, %v", got, err)
	}
	if _, err := m1.Pods(ns).Get(ctx, "intruder", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member pod of intruder: %v", err)
	}
}
