package copies

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

var owner = api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}

// eventually polls cond every 10 ms for up to 10 s.
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

func TestCopyFollowsAndIsCollected(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf", Namespace: "shop", UID: "host-cm"}, Data: map[string]string{"k": "v1"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "host-pod"},
		Spec: corev1.PodSpec{NodeName: owner.NodeName, Volumes: []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}}}}}
	stale := forge.ConfigMap(src, owner)
	stale.Data = map[string]string{"k": "v0"}
	host := fake.NewClientset(src, pod)
	member := fake.NewClientset(stale)
	hf := informers.NewSharedInformerFactory(host, 0)
	mf := informers.NewSharedInformerFactoryWithOptions(member, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = owner.Selector() }))
	c, err := New(Config{Member: "m1", Owner: owner, Client: member,
		HostPods: hf.Core().V1().Pods().Informer(), HostConfigMaps: hf.Core().V1().ConfigMaps().Informer(), HostSecrets: hf.Core().V1().Secrets().Informer(),
		HostServiceAccounts: hf.Core().V1().ServiceAccounts().Informer(),
		ConfigMaps:          mf.Core().V1().ConfigMaps().Informer(), ServiceAccounts: mf.Core().V1().ServiceAccounts().Informer(),
		Secrets:  NewSecretCopies(member, owner, mf.Core().V1().ConfigMaps().Lister(), time.Hour),
		Recorder: record.NewFakeRecorder(10), Grace: 0, Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hf.Start(ctx.Done())
	mf.Start(ctx.Done())
	hf.WaitForCacheSync(ctx.Done())
	mf.WaitForCacheSync(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 1) }()

	get := func() (*corev1.ConfigMap, error) {
		return member.CoreV1().ConfigMaps("shop").Get(ctx, "conf", metav1.GetOptions{})
	}
	// The periodic pass is an hour away: the copy's own add event brings it in step.
	eventually(t, "stale copy updated", func() error {
		cm, err := get()
		if err != nil {
			return err
		}
		if cm.Data["k"] != "v1" {
			return fmt.Errorf("data %v", cm.Data)
		}
		return nil
	})
	// A host update follows.
	up := src.DeepCopy()
	up.Data["k"] = "v2"
	if _, err := host.CoreV1().ConfigMaps("shop").Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "host update followed", func() error {
		cm, err := get()
		if err != nil {
			return err
		}
		if cm.Data["k"] != "v2" {
			return fmt.Errorf("data %v", cm.Data)
		}
		return nil
	})
	// The last user goes: the copy goes (grace 0).
	if err := host.CoreV1().Pods("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unused copy collected", func() error {
		if _, err := get(); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
