package provider

import (
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

// newTestMember is a Member over fake clientsets, its caches synced with the given objects.
func newTestMember(t *testing.T, hostPods []*corev1.Pod, memberObjs ...*corev1.Pod) (*Member, *fake.Clientset, *record.FakeRecorder) {
	t.Helper()
	host := fake.NewClientset()
	for _, p := range hostPods {
		if _, err := host.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	member := fake.NewClientset()
	for _, p := range memberObjs {
		if _, err := member.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	hf := informers.NewSharedInformerFactory(host, 0)
	rec := record.NewFakeRecorder(10)
	m, err := New(Config{
		Member: "m1", NodeName: "tether-m1", ClusterID: "host-1", HostLevel: api.DefaultHostLevel(),
		MemberClient: member, HostClient: host,
		HostPods: hf.Core().V1().Pods().Lister(), HostConfigMaps: hf.Core().V1().ConfigMaps().Lister(),
		HostSecrets: hf.Core().V1().Secrets().Lister(), HostSAs: hf.Core().V1().ServiceAccounts().Lister(),
		Recorder: rec, InternalIP: "127.0.0.1", KubeletPort: 10250, HealthInterval: time.Second, HealthTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	hf.Start(t.Context().Done())
	if !cache.WaitForCacheSync(t.Context().Done(), hf.Core().V1().Pods().Informer().HasSynced) {
		t.Fatal("host cache")
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hf.Shutdown(); m.Shutdown() })
	member.ClearActions()
	return m, member, rec
}

func hostPod(uid string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: types.UID("uid-" + uid)},
		Spec:       corev1.PodSpec{NodeName: "tether-m1", Containers: []corev1.Container{{Name: "app", Image: "web:1"}}},
	}
}

func memberPod(labels map[string]string, hostUID string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "member-uid", Labels: labels,
		Annotations: map[string]string{api.AnnotationHostUID: hostUID}}}
}

func writes(c *fake.Clientset) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range c.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			out = append(out, a)
		}
	}
	return out
}

func TestCreatePodNameConflict(t *testing.T) {
	host := hostPod("1")
	m, member, rec := newTestMember(t, []*corev1.Pod{host}, memberPod(map[string]string{"app": "theirs"}, ""))
	err := m.CreatePod(t.Context(), host)
	if err == nil || !strings.Contains(err.Error(), "does not own") {
		t.Fatalf("err = %v, want a conflict", err)
	}
	if w := writes(member); len(w) != 0 {
		t.Errorf("the unowned member pod was touched: %v", w)
	}
	wantEvent(t, rec, ReasonNameConflict)
}

func TestCreatePodAdoptsOwnCopy(t *testing.T) {
	host := hostPod("1")
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	m, member, _ := newTestMember(t, []*corev1.Pod{host}, memberPod(owner.Labels(), string(host.UID)))
	if err := m.CreatePod(t.Context(), host); err != nil {
		t.Fatal(err)
	}
	if w := writes(member); len(w) != 0 {
		t.Errorf("adoption wrote to the member: %v", w)
	}
}

func TestDeletePodLeavesOthersAlone(t *testing.T) {
	host := hostPod("1")
	otherHost := api.Owner{ClusterID: "host-2", NodeName: "tether-m1"}
	m, member, _ := newTestMember(t, []*corev1.Pod{host}, memberPod(otherHost.Labels(), string(host.UID)))
	if err := m.DeletePod(t.Context(), host); !errdefs.IsNotFound(err) {
		t.Errorf("err = %v, want NotFound", err)
	}
	if w := writes(member); len(w) != 0 {
		t.Errorf("a pod of another host cluster was touched: %v", w)
	}
}

func TestDeletePodUsesUIDPrecondition(t *testing.T) {
	host := hostPod("1")
	host.DeletionGracePeriodSeconds = new(int64)
	*host.DeletionGracePeriodSeconds = 7
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	m, member, _ := newTestMember(t, []*corev1.Pod{host}, memberPod(owner.Labels(), string(host.UID)))
	if err := m.DeletePod(t.Context(), host); err != nil {
		t.Fatal(err)
	}
	w := writes(member)
	if len(w) != 1 || w[0].GetVerb() != "delete" {
		t.Fatalf("writes %v, want one delete", w)
	}
	opts := w[0].(k8stesting.DeleteActionImpl).DeleteOptions
	if opts.Preconditions == nil || opts.Preconditions.UID == nil || *opts.Preconditions.UID != "member-uid" ||
		opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 7 {
		t.Errorf("delete options %+v, want UID precondition and the host's grace period", opts)
	}
}

func TestStatusOfUnscheduledMemberPod(t *testing.T) {
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}
	unschedulable := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}
	tests := []struct {
		name     string
		nodeName string
		conds    []corev1.PodCondition
		push     bool
	}{
		{name: "fresh copy: nothing new for the host", push: false},
		{name: "unschedulable in the member", conds: []corev1.PodCondition{unschedulable}, push: true},
		{name: "running in the member", nodeName: "m1-node-0", conds: []corev1.PodCondition{scheduled}, push: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := hostPod("1")
			host.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{scheduled}}
			mp := memberPod(owner.Labels(), string(host.UID))
			mp.Spec.NodeName = tt.nodeName
			mp.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: tt.conds}
			if tt.nodeName != "" {
				mp.Status.Phase = corev1.PodRunning
			}
			m, _, _ := newTestMember(t, []*corev1.Pod{host})
			var pushed []*corev1.Pod
			m.mu.Lock()
			m.notifyPod = func(p *corev1.Pod) { pushed = append(pushed, p) }
			m.mu.Unlock()
			m.onMemberPod(nil, mp)
			if got := len(pushed) > 0; got != tt.push {
				t.Errorf("pushed %v, want a push: %v", pushed, tt.push)
			}
			for _, p := range pushed {
				if p.Name != host.Name || p.UID != host.UID || len(p.Spec.Containers) != 0 || p.Status.Phase != mp.Status.Phase {
					t.Errorf("pushed %s/%s uid %s, %d containers, phase %s: want the host pod's metadata, no spec, the member's phase",
						p.Namespace, p.Name, p.UID, len(p.Spec.Containers), p.Status.Phase)
				}
			}
		})
	}
}

func TestTrimForCache(t *testing.T) {
	p := hostPod("1")
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kwok", Operation: metav1.ManagedFieldsOperationUpdate}}
	out, err := TrimForCache(p)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Pod)
	if got.ManagedFields != nil || got.Name != "web" || got.Spec.NodeName != "tether-m1" {
		t.Errorf("trimmed pod %+v: want the same pod without managedFields", got.ObjectMeta)
	}
	if _, err := TrimForCache(cache.DeletedFinalStateUnknown{Key: "shop/web"}); err != nil {
		t.Errorf("a tombstone: %v", err)
	}
}

func TestTrimMemberCacheKeepsWhatTetherReads(t *testing.T) {
	p := hostPod("1")
	p.Labels = map[string]string{api.LabelManagedBy: api.ManagedByTether}
	p.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access-x"}}
	p.Spec.Tolerations = []corev1.Toleration{{Key: "k"}}
	p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-x"}}
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers = []corev1.Container{{Name: "sidecar", Image: "s", RestartPolicy: &always,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}
	p.Status.Phase = corev1.PodRunning
	before := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
	out, err := trimMemberCache(p.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Pod)
	if got.Spec.Volumes != nil || got.Spec.Tolerations != nil || got.Spec.Containers[0].VolumeMounts != nil || got.Spec.Containers[0].Image != "" {
		t.Errorf("spec not trimmed: %+v", got.Spec)
	}
	if got.Spec.NodeName != "tether-m1" || got.Labels[api.LabelManagedBy] != api.ManagedByTether || got.Status.Phase != corev1.PodRunning {
		t.Errorf("lost what Tether reads: %+v", got)
	}
	if after := resourcehelper.PodRequests(got, resourcehelper.PodResourcesOptions{}); !equality.Semantic.DeepEqual(before, after) {
		t.Errorf("requests %v, want %v", after, before)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	if out, _ := trimMemberCache(node); out.(*corev1.Node).Name != "n" {
		t.Error("a node must pass")
	}
}

// A host user must not get a member's own ServiceAccount (or Secret, or ConfigMap) by naming one of the same name.
func TestCreatePodDependencyConflict(t *testing.T) {
	host := hostPod("1")
	host.Spec.ServiceAccountName = "powerful"
	m, member, rec := newTestMember(t, []*corev1.Pod{host})
	hostClient := m.cfg.HostClient.(*fake.Clientset)
	if _, err := hostClient.CoreV1().ServiceAccounts("shop").Create(t.Context(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "powerful", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	theirs := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "powerful", Namespace: "shop", Labels: map[string]string{"team": "ops"}}}
	if _, err := member.CoreV1().ServiceAccounts("shop").Create(t.Context(), theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := m.cfg.HostSAs.ServiceAccounts("shop").Get("powerful"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("host ServiceAccount never reached the cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
	member.ClearActions()
	err := m.CreatePod(t.Context(), host)
	if err == nil || !strings.Contains(err.Error(), "serviceaccount shop/powerful that Tether does not own") {
		t.Fatalf("err = %v, want a conflict naming the ServiceAccount", err)
	}
	for _, a := range writes(member) {
		if a.GetVerb() != "create" || a.GetResource().Resource == "pods" {
			t.Errorf("unexpected member write %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	got, err := member.CoreV1().ServiceAccounts("shop").Get(t.Context(), "powerful", metav1.GetOptions{})
	if err != nil || !equality.Semantic.DeepEqual(got.Labels, theirs.Labels) {
		t.Errorf("the member's ServiceAccount changed: %v, %v", got, err)
	}
	wantEvent(t, rec, ReasonDependencyConflict)
}

func TestCreatePodDeniedNamespace(t *testing.T) {
	host := hostPod("1")
	host.Namespace = metav1.NamespaceSystem
	m, member, rec := newTestMember(t, []*corev1.Pod{host})
	m.cfg.DeniedNamespaces = []string{metav1.NamespaceSystem}
	if err := m.CreatePod(t.Context(), host); err != nil {
		t.Fatal(err)
	}
	if w := writes(member); len(w) != 0 {
		t.Errorf("member writes for a denied namespace: %v", w)
	}
	wantEvent(t, rec, ReasonDeniedNamespace)
}

func TestCreatePodDaemonSetPodWaits(t *testing.T) {
	host := hostPod("1")
	host.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "ds", Controller: ptr.To(true)}}
	m, member, rec := newTestMember(t, []*corev1.Pod{host})
	if err := m.CreatePod(t.Context(), host); err != nil {
		t.Fatal(err)
	}
	if w := writes(member); len(w) != 0 {
		t.Errorf("member writes for a DaemonSet pod: %v", w)
	}
	wantEvent(t, rec, ReasonDaemonSetPod)
	m.cfg.OffloadDaemonSetPods = true
	if err := m.CreatePod(t.Context(), host); err != nil {
		t.Fatal(err)
	}
	if w := writes(member); len(w) == 0 {
		t.Error("--offload-daemonset-pods: no member pod")
	}
}

// wantEvent reads the next event and checks its reason; it fails after 10 s without one.
func wantEvent(t *testing.T, rec *record.FakeRecorder, reason string) {
	t.Helper()
	select {
	case ev := <-rec.Events:
		if !strings.Contains(ev, reason) {
			t.Errorf("event %q, want %s", ev, reason)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("no %s event", reason)
	}
}
