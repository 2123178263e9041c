package volumes

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

var owner = api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

// A claim of Tether's class picked for this member: copied with the member class, given a host volume pinned to
// the member, annotated once the copy is bound; its deletion takes the copy, then the host volume.
func TestClaimProvisionedAndCollected(t *testing.T) {
	ctx := t.Context()
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "tether"}, Provisioner: api.Provisioner,
		Parameters: map[string]string{api.StorageClassParamMemberClass: "local-path"}}
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop", UID: "claim-1",
			Annotations: map[string]string{annSelectedNode: owner.NodeName}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: ptr.To("tether"),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	// Another member's claim: not this controller's.
	elsewhere := claim.DeepCopy()
	elsewhere.Name, elsewhere.UID, elsewhere.Annotations = "theirs", "claim-2", map[string]string{annSelectedNode: "tether-m2"}
	host := fake.NewClientset(sc, claim, elsewhere)
	member := fake.NewClientset()
	hf := informers.NewSharedInformerFactory(host, 0)
	mf := informers.NewSharedInformerFactoryWithOptions(member, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = owner.Selector() }))
	var namespaces []string
	c, err := New(Config{Member: "m1", Owner: owner, Client: member, Host: host,
		HostClaims: hf.Core().V1().PersistentVolumeClaims().Informer(), HostVolumes: hf.Core().V1().PersistentVolumes().Informer(),
		HostClasses: hf.Storage().V1().StorageClasses().Lister(), Claims: mf.Core().V1().PersistentVolumeClaims().Informer(),
		EnsureNamespace: func(_ context.Context, ns string) error { namespaces = append(namespaces, ns); return nil },
		Recorder:        record.NewFakeRecorder(10), Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hf.Start(ctx.Done())
	mf.Start(ctx.Done())
	hf.WaitForCacheSync(ctx.Done())
	mf.WaitForCacheSync(ctx.Done())
	go func() { _ = c.Run(ctx, 1) }()

	eventually(t, "copy and host volume", func() error {
		cp, err := member.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !owner.Owns(cp) || cp.Annotations[api.AnnotationHostUID] != "claim-1" || ptr.Deref(cp.Spec.StorageClassName, "") != "local-path" {
			return fmt.Errorf("copy %+v", cp.ObjectMeta)
		}
		pv, err := host.CoreV1().PersistentVolumes().Get(ctx, api.HostVolumeName("claim-1"), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != "claim-1" || !owner.Owns(pv) {
			return fmt.Errorf("host volume %+v", pv)
		}
		return nil
	})
	if len(namespaces) == 0 || namespaces[0] != "shop" {
		t.Errorf("namespaces ensured: %v", namespaces)
	}
	if _, err := member.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "theirs", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("another member's claim copied here: %v", err)
	}

	// The member binds the copy; the host binds the claim to the host volume.
	cp, _ := member.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
	cp.Spec.VolumeName = "pv-a"
	if _, err := member.CoreV1().PersistentVolumeClaims("shop").Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	bound := claim.DeepCopy()
	bound.Spec.VolumeName = api.HostVolumeName("claim-1")
	if _, err := host.CoreV1().PersistentVolumeClaims("shop").Update(ctx, bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "host claim annotated", func() error {
		got, err := host.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v := got.Annotations[api.AnnotationMemberVolume]; v != "m1/pv-a" {
			return fmt.Errorf("%s=%q", api.AnnotationMemberVolume, v)
		}
		return nil
	})

	if err := host.CoreV1().PersistentVolumeClaims("shop").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "copy and host volume gone", func() error {
		if _, err := member.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("copy: %v", err)
		}
		if _, err := host.CoreV1().PersistentVolumes().Get(ctx, api.HostVolumeName("claim-1"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("host volume: %v", err)
		}
		return nil
	})
}
