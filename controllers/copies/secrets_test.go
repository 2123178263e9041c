package copies

import (
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/provider/forge"
)

// secretCopies serves SecretCopies from a fake member whose ConfigMap cache is fed by an informer; writes counts
// the Secret writes the member saw.
func secretCopies(t *testing.T, objs ...runtime.Object) (*SecretCopies, *fake.Clientset, *int) {
	t.Helper()
	member := fake.NewClientset(objs...)
	writes := new(int)
	member.PrependReactor("*", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetVerb() {
		case "get", "list", "watch":
			t.Errorf("SecretCopies read a Secret: %s %s", a.GetVerb(), a.GetResource())
		default:
			*writes++
		}
		return false, nil, nil
	})
	// The fake gives no UIDs; the member does, and SecretCopies relies on them.
	uids := 0
	member.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if o, err := meta.Accessor(a.(k8stesting.CreateAction).GetObject()); err == nil && o.GetUID() == "" {
			uids++
			o.SetUID(types.UID(fmt.Sprintf("uid-%d", uids)))
		}
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(member, 0)
	lister := f.Core().V1().ConfigMaps().Lister()
	f.Start(t.Context().Done())
	f.WaitForCacheSync(t.Context().Done())
	return NewSecretCopies(member, owner, lister, time.Hour), member, writes
}

func hostSecret(data string) *corev1.Secret {
	return forge.Secret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "shop", UID: "host-1"},
		Data: map[string][]byte{"k": []byte(data)}}, owner)
}

func TestSecretCopiesWriteWithoutReading(t *testing.T) {
	ctx := t.Context()
	s, member, writes := secretCopies(t)
	if _, err := s.Ensure(ctx, hostSecret("v1")); err != nil {
		t.Fatal(err)
	}
	got, err := member.Tracker().Get(corev1.SchemeGroupVersion.WithResource("secrets"), "shop", "creds")
	if err != nil {
		t.Fatal(err)
	}
	copied := got.(*corev1.Secret)
	record, err := member.CoreV1().ConfigMaps("shop").Get(ctx, s.RecordName(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no record: %v", err)
	}
	if len(copied.OwnerReferences) != 1 || copied.OwnerReferences[0].Name != s.RecordName() || copied.OwnerReferences[0].UID != record.UID {
		t.Errorf("the copy's owners %+v, want the record %s", copied.OwnerReferences, record.UID)
	}
	e, ok := s.Entry("shop", "creds")
	if !ok || e.UID != copied.UID || e.Host != "host-1" || record.Data["creds"] == "" {
		t.Errorf("entry %+v (recorded %v), record %v", e, ok, record.Data)
	}

	// In step: nothing written.
	before := *writes
	if written, err := s.Ensure(ctx, hostSecret("v1")); err != nil || written || *writes != before {
		t.Errorf("in step: written %v, %d writes, %v", written, *writes-before, err)
	}
	// Changed on the host: one update.
	if written, err := s.Ensure(ctx, hostSecret("v2")); err != nil || !written || *writes != before+1 {
		t.Errorf("update: written %v, %d writes, %v", written, *writes-before, err)
	}
	// Known to a new process from the record alone.
	s2, _, _ := secretCopies(t, record)
	if keys := s2.Keys(); len(keys) != 1 || keys[0] != "shop/creds" {
		t.Errorf("keys from the record: %v", keys)
	}

	// Deleted: the copy and the record (its last entry) go.
	if err := s.Delete(ctx, "shop", "creds"); err != nil {
		t.Fatal(err)
	}
	if _, err := member.CoreV1().ConfigMaps("shop").Get(ctx, s.RecordName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("record after the last copy went: %v", err)
	}
	if _, ok := s.Entry("shop", "creds"); ok || len(s.Keys()) != 0 {
		t.Errorf("entry left: %v", s.Keys())
	}
}

func TestSecretCopiesLeaveOthersAlone(t *testing.T) {
	ctx := t.Context()
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "shop", UID: "theirs"}}
	s, _, _ := secretCopies(t, theirs)
	if _, err := s.Ensure(ctx, hostSecret("v1")); !errors.Is(err, ErrNotOurs) {
		t.Errorf("a Secret of the member's own: %v, want ErrNotOurs", err)
	}
	if _, ok := s.Entry("shop", "creds"); ok {
		t.Error("someone else's Secret recorded as a copy")
	}
	// A ConfigMap of the record's name that is not Tether's: no copy is made there.
	squat := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: s.RecordName(), Namespace: "shop"}}
	s, _, writes := secretCopies(t, squat)
	if _, err := s.Ensure(ctx, hostSecret("v1")); !errors.Is(err, ErrNotOurs) || *writes != 0 {
		t.Errorf("record name taken: %v, %d writes", err, *writes)
	}
}

func TestSecretCopiesRecordGone(t *testing.T) {
	ctx := t.Context()
	s, member, writes := secretCopies(t)
	if _, err := s.Ensure(ctx, hostSecret("v1")); err != nil {
		t.Fatal(err)
	}
	record, err := member.CoreV1().ConfigMaps("shop").Get(ctx, s.RecordName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := member.CoreV1().ConfigMaps("shop").Delete(ctx, s.RecordName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if keys := s.RecordGone("shop", record.UID); len(keys) != 1 || keys[0] != "shop/creds" {
		t.Errorf("keys to look at again: %v", keys)
	}
	// In step, and still written again: under a new record.
	before := *writes
	if written, err := s.Ensure(ctx, hostSecret("v1")); err != nil || !written || *writes != before+1 {
		t.Errorf("after the record went: written %v, %d writes, %v", written, *writes-before, err)
	}
	again, err := member.CoreV1().ConfigMaps("shop").Get(ctx, s.RecordName(), metav1.GetOptions{})
	if err != nil || again.Data["creds"] == "" {
		t.Errorf("new record %v: %v", again, err)
	}
}
