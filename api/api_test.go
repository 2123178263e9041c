package api

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The values of DESIGN.md "Contracts": users and other tools rely on them, so a change here is a breaking change.
func TestContractValues(t *testing.T) {
	for got, want := range map[string]string{
		LabelMember: "tether.io/member", AnnotationScheduling: "tether.io/scheduling", AnnotationFragments: "tether.io/fragments",
		AnnotationKubeletPort: "tether.io/kubelet-port", DefaultOffloadSelector: "tether.io/offload=enabled",
		LabelManagedBy: "app.kubernetes.io/managed-by", ManagedByTether: "tether", LabelHostCluster: "tether.io/host-cluster",
		LabelNode: "tether.io/node", AnnotationHostUID: "tether.io/host-uid", DefaultNamespace: "tether-system",
		DefaultNodePrefix: "tether-", MemberSecretKubeconfig: "kubeconfig", ObjectCountQuota: "tether-object-count",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	if diff := cmp.Diff(map[string]string{"type": "virtual-kubelet", "kubernetes.io/role": "agent",
		"kubernetes.io/hostname": "tether-m1", "tether.io/member": "m1"}, NodeLabels("m1", "tether-m1")); diff != "" {
		t.Errorf("node labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(corev1.Taint{Key: "virtual-kubelet.io/provider", Value: "tether", Effect: corev1.TaintEffectNoSchedule}, Taint()); diff != "" {
		t.Errorf("taint (-want +got):\n%s", diff)
	}
	tol := Tolerations(300)
	taint := Taint()
	if tol[0].Key != taint.Key || tol[0].Value != taint.Value || tol[0].Effect != taint.Effect || !IsVirtualNodeToleration(tol[0]) || IsVirtualNodeToleration(tol[1]) {
		t.Errorf("tolerations %+v", tol)
	}
	if *tol[1].TolerationSeconds != 300 || *tol[2].TolerationSeconds != 300 {
		t.Errorf("toleration seconds %+v", tol)
	}
}

func TestOwner(t *testing.T) {
	owner := Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	mine := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: owner.Labels()}}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: Owner{ClusterID: "host-2", NodeName: "tether-m1"}.Labels()}}
	sibling := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: Owner{ClusterID: "host-1", NodeName: "tether-m2"}.Labels()}}
	user := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}}
	for _, tt := range []struct {
		name               string
		pod                *corev1.Pod
		owns, ownsForClust bool
	}{{"mine", mine, true, true}, {"other host", other, false, false}, {"other node", sibling, false, true}, {"user", user, false, false}} {
		if got := owner.Owns(tt.pod); got != tt.owns {
			t.Errorf("%s: Owns = %v", tt.name, got)
		}
		if got := owner.OwnsForCluster(tt.pod); got != tt.ownsForClust {
			t.Errorf("%s: OwnsForCluster = %v", tt.name, got)
		}
	}
	if want := "app.kubernetes.io/managed-by=tether,tether.io/host-cluster=host-1,tether.io/node=tether-m1"; owner.Selector() != want {
		t.Errorf("selector %q", owner.Selector())
	}
}

func TestHostLevel(t *testing.T) {
	h := NewHostLevel(DefaultNodePrefix, []string{"example.com/region"})
	req := func(key string, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
	}
	for _, tt := range []struct {
		name       string
		expression corev1.NodeSelectorRequirement
		want       bool
	}{
		{"member", req(LabelMember, "m1"), true},
		{"type", req(NodeTypeKey, NodeType), true},
		{"kept by flag", req("example.com/region", "eu"), true},
		{"hostname of a virtual node", req(corev1.LabelHostname, "tether-m1", "tether-m2"), true},
		{"hostname of a member node", req(corev1.LabelHostname, "node-1"), false},
		{"hostname of both", req(corev1.LabelHostname, "tether-m1", "node-1"), false},
		{"hostname without values", corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpExists}, false},
		{"zone", req(corev1.LabelTopologyZone, "a"), false},
	} {
		if got := h.IsHostLevelExpression(tt.expression); got != tt.want {
			t.Errorf("%s: IsHostLevelExpression = %v", tt.name, got)
		}
	}
	for _, tt := range []struct {
		name  string
		field corev1.NodeSelectorRequirement
		want  bool
	}{
		{"virtual node name", req(metav1.ObjectNameField, "tether-m1"), true},
		{"member node name", req(metav1.ObjectNameField, "node-1"), false},
		{"no values", corev1.NodeSelectorRequirement{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn}, false},
		{"another field", req("metadata.uid", "tether-m1"), false},
	} {
		if got := h.IsHostLevelField(tt.field); got != tt.want {
			t.Errorf("%s: IsHostLevelField = %v", tt.name, got)
		}
	}
	if !h.IsHostLevelTopologyKey(LabelMember) || h.IsHostLevelTopologyKey(corev1.LabelHostname) || h.IsHostLevelTopologyKey(corev1.LabelTopologyZone) {
		t.Error("topology keys: want tether.io/member only")
	}
	if got := DefaultHostLevel(); len(got.Keys) != 3 || got.VirtualNodePrefix != DefaultNodePrefix {
		t.Errorf("DefaultHostLevel = %+v", got)
	}
}

func TestSchedulingRoundTrip(t *testing.T) {
	in := &Scheduling{NodeSelector: map[string]string{"a": "b"}, Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}}
	s, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseScheduling(s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("(-in +out):\n%s", diff)
	}
	for _, bad := range []string{s + "{}", `{"nodeselector":{}}`, `{"nodeSelector":{},"nodeSelector":{}}`, `{"nodeSelector":`} {
		if _, err := ParseScheduling(bad); err == nil || !strings.Contains(err.Error(), AnnotationScheduling) {
			t.Errorf("%s: err = %v, want an error naming the annotation", bad, err)
		}
	}
}

func TestFragmentsRoundTrip(t *testing.T) {
	f := Fragments{UsableNodes: 2, LargestFree: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"),
		corev1.ResourceMemory: resource.MustParse("2Gi"), corev1.ResourcePods: resource.MustParse("7")}}
	s := f.Encode()
	if s != `{"usableNodes":2,"largestFree":{"cpu":"1500m","memory":"2Gi","pods":"7"}}` {
		t.Errorf("encoded %s", s)
	}
	back, err := ParseFragments(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.LargestFree.Cpu().MilliValue() != 1500 || back.UsableNodes != 2 {
		t.Errorf("decoded %+v", back)
	}
	if _, err := ParseFragments(`{"usablenodes":2}`); err == nil {
		t.Error("a misspelt field is accepted")
	}
}

func TestMemberOfSecret(t *testing.T) {
	named := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{LabelMember: "m1"}}}
	unnamed := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "m2", Labels: map[string]string{LabelMember: ""}}}
	if MemberOfSecret(named) != "m1" || MemberOfSecret(unnamed) != "m2" {
		t.Errorf("members %q %q", MemberOfSecret(named), MemberOfSecret(unnamed))
	}
	if len(validation.IsQualifiedName(MemberSelector)) > 0 {
		t.Errorf("selector %q", MemberSelector)
	}
}

func TestAvoidRoundTrip(t *testing.T) {
	if DefaultAvoidConfigMap != "tether-avoid" || DeschedulerReportingController != "tether.io/tether-descheduler" {
		t.Errorf("names %q %q", DefaultAvoidConfigMap, DeschedulerReportingController)
	}
	now := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	a := Avoid{}
	owner := AvoidOwner{Kind: "ReplicaSet", Namespace: "shop", Name: "web-1"}
	a.Add("uid-1", owner, "m1", now.Add(5*time.Minute))
	a.Add("uid-1", owner, "m1", now.Add(time.Minute)) // shorter: the longer one stays
	a.Add("uid-1", owner, "m2", now.Add(-time.Second))
	a.Add("uid-2", AvoidOwner{Kind: "Job", Namespace: "batch", Name: "j"}, "m3", now.Add(time.Minute))
	data := a.Encode()
	if want := `{"owner":{"kind":"ReplicaSet","namespace":"shop","name":"web-1"},"members":{"m1":"2026-12-02T05:05:00Z","m2":"2026-12-02T04:59:59Z"}}`; data["uid-1"] != want {
		t.Errorf("encoded\n%s\nwant\n%s", data["uid-1"], want)
	}
	data["bad"] = `{"owner":{},"member":{}}`
	back, err := ParseAvoid(data)
	if err == nil || !strings.Contains(err.Error(), "key bad") {
		t.Errorf("a misspelt field: error %v", err)
	}
	if diff := cmp.Diff([]string{"m1"}, back.Members("uid-1", now)); diff != "" {
		t.Errorf("members of uid-1 (-want +got):\n%s", diff)
	}
	if got := back.Members("uid-1", now.Add(5*time.Minute)); len(got) != 0 {
		t.Errorf("expired members still avoided: %v", got)
	}
	if got := back.Members("unknown", now); len(got) != 0 {
		t.Errorf("unknown owner avoids %v", got)
	}
	back.Prune(now.Add(2 * time.Minute))
	if diff := cmp.Diff([]string{"uid-1"}, slices.Sorted(maps.Keys(back))); diff != "" {
		t.Errorf("after prune (-want +got):\n%s", diff)
	}
	if _, ok := back["uid-1"].Members["m2"]; ok {
		t.Error("expired m2 not pruned")
	}
}

func TestMemberOfNode(t *testing.T) {
	node := func(name string, labels map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	for _, tc := range []struct {
		name   string
		node   *corev1.Node
		member string
		ok     bool
	}{
		{"virtual node", node("tether-m1", NodeLabels("m1", "tether-m1")), "m1", true},
		{"real node", node("worker-1", map[string]string{corev1.LabelHostname: "worker-1"}), "", false},
		{"other virtual-kubelet provider", node("vk-1", map[string]string{NodeTypeKey: NodeType}), "", false},
		{"name does not match the member", node("tether-m2", NodeLabels("m1", "tether-m2")), "", false},
		{"nil", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			member, ok := MemberOfNode(tc.node, DefaultNodePrefix)
			if member != tc.member || ok != tc.ok {
				t.Errorf("MemberOfNode = %q, %v; want %q, %v", member, ok, tc.member, tc.ok)
			}
		})
	}
}

// The record of one virtual node is a valid ConfigMap name, and another host's node of the same name has its own.
func TestSecretRecordName(t *testing.T) {
	a := Owner{ClusterID: "host-a", NodeName: "tether-m1"}.SecretRecordName()
	b := Owner{ClusterID: "host-b", NodeName: "tether-m1"}.SecretRecordName()
	if errs := validation.IsDNS1123Subdomain(a); len(errs) > 0 || !strings.HasPrefix(a, "tether-secrets-") {
		t.Errorf("record name %q: %v", a, errs)
	}
	if a == b {
		t.Errorf("two hosts share the record name %q", a)
	}
}
