package forge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

var copyOwner = api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}

func hostConfigMap(uid string, data map[string]string, immutable bool) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf", Namespace: "shop", UID: k8stypes.UID("uid-" + uid), Labels: map[string]string{"app": "shop"}}, Data: data}
	if immutable {
		cm.Immutable = ptr.To(true)
	}
	return cm
}

func TestConfigMapCopy(t *testing.T) {
	src := hostConfigMap("1", map[string]string{"k": "v"}, false)
	got := ConfigMap(src, copyOwner)
	want := map[string]string{"app": "shop", api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: "host-1", api.LabelNode: "tether-m1"}
	if diff := cmp.Diff(want, got.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if got.Annotations[api.AnnotationHostUID] != "uid-1" || got.Data["k"] != "v" || got.UID != "" || got.ResourceVersion != "" {
		t.Errorf("copy %+v", got)
	}
}

func TestConfigMapAction(t *testing.T) {
	tests := []struct {
		name       string
		have, want *corev1.ConfigMap
		action     CopyAction
	}{
		{"in step", hostConfigMap("1", map[string]string{"k": "v"}, false), hostConfigMap("1", map[string]string{"k": "v"}, false), CopyInStep},
		{"new data", hostConfigMap("1", map[string]string{"k": "v"}, false), hostConfigMap("1", map[string]string{"k": "v2"}, false), CopyUpdate},
		{"made immutable", hostConfigMap("1", map[string]string{"k": "v"}, false), hostConfigMap("1", map[string]string{"k": "v"}, true), CopyUpdate},
		{"immutable with new data", hostConfigMap("1", map[string]string{"k": "v"}, true), hostConfigMap("1", map[string]string{"k": "v2"}, true), CopyReplace},
		{"another host object", hostConfigMap("1", map[string]string{"k": "v"}, false), hostConfigMap("2", map[string]string{"k": "v"}, false), CopyReplace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have, want := ConfigMap(tt.have, copyOwner), ConfigMap(tt.want, copyOwner)
			if got := ConfigMapAction(have, want); got != tt.action {
				t.Errorf("action = %d, want %d", got, tt.action)
			}
		})
	}
	// A label changed on the host is an update.
	have := ConfigMap(hostConfigMap("1", map[string]string{"k": "v"}, true), copyOwner)
	src := hostConfigMap("1", map[string]string{"k": "v"}, true)
	src.Labels["app"] = "other"
	if got := ConfigMapAction(have, ConfigMap(src, copyOwner)); got != CopyUpdate {
		t.Errorf("label change on an immutable copy: action = %d, want an update (labels are not data)", got)
	}
}

func TestSecretCopyAction(t *testing.T) {
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "shop", UID: "uid-1"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("v")}}
	want := Secret(src, copyOwner)
	written := want.DeepCopy()
	written.UID = "member-uid"
	entry := SecretEntryOf(written, want)
	if entry.UID != "member-uid" || entry.Host != "uid-1" || entry.Type != corev1.SecretTypeOpaque || entry.Immutable {
		t.Errorf("entry %+v", entry)
	}
	with := func(change func(*corev1.Secret)) *corev1.Secret {
		s := src.DeepCopy()
		change(s)
		return Secret(s, copyOwner)
	}
	frozen := entry
	frozen.Immutable = true
	for _, c := range []struct {
		name     string
		entry    SecretEntry
		recorded bool
		want     *corev1.Secret
		action   CopyAction
	}{
		{"not recorded", SecretEntry{}, false, want, CopyCreate},
		{"in step", entry, true, want, CopyInStep},
		{"data changed", entry, true, with(func(s *corev1.Secret) { s.Data["k"] = []byte("v2") }), CopyUpdate},
		{"label changed", entry, true, with(func(s *corev1.Secret) { s.Labels = map[string]string{"app": "x"} }), CopyUpdate},
		{"type changed: a Secret's type cannot change", entry, true, with(func(s *corev1.Secret) { s.Type = corev1.SecretTypeDockerConfigJson }), CopyReplace},
		{"host Secret replaced under the same name", entry, true, with(func(s *corev1.Secret) { s.UID = "uid-2" }), CopyReplace},
		{"immutable copy changed", frozen, true, with(func(s *corev1.Secret) { s.Data["k"] = []byte("v2") }), CopyReplace},
	} {
		if got := SecretCopyAction(c.entry, c.recorded, c.want); got != c.action {
			t.Errorf("%s: action = %d, want %d", c.name, got, c.action)
		}
	}
	if SecretHash(want) == SecretHash(with(func(s *corev1.Secret) { s.Data["k2"] = nil })) {
		t.Error("a new key does not change the hash")
	}
}

func TestPodMetaPatch(t *testing.T) {
	member := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "member-uid",
		Labels:      map[string]string{"app": "a", "old": "1", api.LabelManagedBy: api.ManagedByTether},
		Annotations: map[string]string{"member.example/added": "keep", "gone": "1", api.AnnotationHostUID: "h"}}}
	wantLabels := map[string]string{"app": "a", "tier": "gold", api.LabelManagedBy: api.ManagedByTether}
	wantAnnotations := map[string]string{api.AnnotationHostUID: "h", "new": "yes"}
	got := string(PodMetaPatch(member, wantLabels, wantAnnotations, []string{"gone", api.AnnotationHostUID}))
	want := `{"metadata":{"annotations":{"gone":null,"new":"yes"},"labels":{"old":null,"tier":"gold"},"uid":"member-uid"}}`
	if got != want {
		t.Errorf("patch\n got %s\nwant %s", got, want)
	}
	member.Labels = wantLabels
	member.Annotations = map[string]string{"member.example/added": "keep", api.AnnotationHostUID: "h", "new": "yes"}
	if p := PodMetaPatch(member, wantLabels, wantAnnotations, nil); p != nil {
		t.Errorf("in step: patch %s, want none", p)
	}
}
