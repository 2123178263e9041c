package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

type podOpt func(*corev1.Pod)

func makePod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func nodeSelector(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func toleration(key string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
}

func req(key string, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
}

func requiredTerms(terms ...[]corev1.NodeSelectorRequirement) podOpt {
	return func(p *corev1.Pod) {
		var ts []corev1.NodeSelectorTerm
		for _, t := range terms {
			ts = append(ts, corev1.NodeSelectorTerm{MatchExpressions: t})
		}
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		p.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: ts}}
	}
}

func antiAffinity(topologyKeys ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		a := &corev1.PodAntiAffinity{}
		for _, k := range topologyKeys {
			a.RequiredDuringSchedulingIgnoredDuringExecution = append(a.RequiredDuringSchedulingIgnoredDuringExecution,
				corev1.PodAffinityTerm{TopologyKey: k, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}})
		}
		p.Spec.Affinity.PodAntiAffinity = a
	}
}

func spread(key string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: corev1.DoNotSchedule})
	}
}

func parked(t *testing.T, p *corev1.Pod) *api.Scheduling {
	t.Helper()
	raw, ok := p.Annotations[api.AnnotationScheduling]
	if !ok {
		return nil
	}
	s, err := api.ParseScheduling(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMutate(t *testing.T) {
	opts := DefaultOptions()
	added := api.Tolerations(opts.TolerationSeconds)
	tests := []struct {
		name         string
		pod          *corev1.Pod
		wantSelector map[string]string
		wantAffinity *corev1.Affinity
		wantSpread   []string // topology keys kept
		wantParked   *api.Scheduling
	}{{
		name:         "nodeSelector split: host-level keys stay",
		pod:          makePod(nodeSelector("disktype", "ssd", api.LabelMember, "m2")),
		wantSelector: map[string]string{api.LabelMember: "m2"},
		wantParked:   &api.Scheduling{NodeSelector: map[string]string{"disktype": "ssd"}},
	}, {
		name:       "tolerations are parked",
		pod:        makePod(toleration("dedicated")),
		wantParked: &api.Scheduling{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}},
	}, {
		name: "node affinity: host-level requirements stay, the rest is parked",
		pod:  makePod(requiredTerms([]corev1.NodeSelectorRequirement{req(api.LabelMember, "m1"), req("topology.kubernetes.io/zone", "a")})),
		wantAffinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{req(api.LabelMember, "m1")}}}}}},
		wantParked: &api.Scheduling{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{req("topology.kubernetes.io/zone", "a")}}}}}}},
	}, {
		name: "pod anti-affinity on a member key stays; on hostname is parked",
		pod:  makePod(antiAffinity(api.LabelMember, "kubernetes.io/hostname")),
		wantAffinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
			{TopologyKey: api.LabelMember, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}}}},
		wantParked: &api.Scheduling{Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
			{TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}}}}},
	}, {
		name:       "topology spread: member key stays, zone is parked",
		pod:        makePod(spread(api.LabelMember), spread("topology.kubernetes.io/zone")),
		wantSpread: []string{api.LabelMember},
		wantParked: &api.Scheduling{TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.DoNotSchedule}}},
	}, {
		name:       "nothing to park: an empty annotation marks the pod as done",
		pod:        makePod(),
		wantParked: &api.Scheduling{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Mutate(tt.pod, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantSelector, got.Spec.NodeSelector); diff != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantAffinity, got.Spec.Affinity); diff != "" {
				t.Errorf("affinity (-want +got):\n%s", diff)
			}
			var spreadKeys []string
			for _, c := range got.Spec.TopologySpreadConstraints {
				spreadKeys = append(spreadKeys, c.TopologyKey)
			}
			if diff := cmp.Diff(tt.wantSpread, spreadKeys); diff != "" {
				t.Errorf("spread (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantParked, parked(t, got)); diff != "" {
				t.Errorf("parked (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(added, got.Spec.Tolerations); diff != "" {
				t.Errorf("host tolerations (-want +got):\n%s", diff)
			}
			again, err := Mutate(got, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("not idempotent (-first +second):\n%s", diff)
			}
			if ops := Patch(got, again); len(ops) != 0 {
				t.Errorf("second run patches %v", ops)
			}
			// The patch turns the input into the output.
			applyPatch(t, tt.pod, got)
			// tether-node's restore undoes the parking on the member pod.
			member, err := forge.Pod(got, forge.PodOptions{HostLevel: opts.HostLevel})
			if err != nil {
				t.Fatal(err)
			}
			if want := parked(t, got); want != nil && !cmp.Equal(want.NodeSelector, member.Spec.NodeSelector) {
				t.Errorf("member nodeSelector %v, parked %v", member.Spec.NodeSelector, want.NodeSelector)
			}
		})
	}
}

func applyPatch(t *testing.T, in, want *corev1.Pod) {
	t.Helper()
	ops := Patch(in, want)
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	inJSON, _ := json.Marshal(in)
	p, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		t.Fatal(err)
	}
	outJSON, err := p.Apply(inJSON)
	if err != nil {
		t.Fatalf("apply %s: %v", patchJSON, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(outJSON, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("patched pod (-want +got):\n%s", diff)
	}
}

func TestMutateKeepsValidAnnotationAndRejectsMalformed(t *testing.T) {
	valid := `{"nodeSelector":{"disktype":"ssd"}}`
	got, err := Mutate(makePod(nodeSelector("zone", "a"), func(p *corev1.Pod) {
		p.Annotations = map[string]string{api.AnnotationScheduling: valid}
	}), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations[api.AnnotationScheduling] != valid || got.Spec.NodeSelector["zone"] != "a" {
		t.Errorf("an existing valid annotation must be kept as it is: %v %v", got.Annotations, got.Spec.NodeSelector)
	}
	_, err = Mutate(makePod(func(p *corev1.Pod) { p.Annotations = map[string]string{api.AnnotationScheduling: "{"} }), DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), api.AnnotationScheduling) {
		t.Errorf("err = %v, want one naming the annotation", err)
	}
}

func TestTolerationSeconds(t *testing.T) {
	o := DefaultOptions()
	o.TolerationSeconds = 60
	got, err := Mutate(makePod(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tol := range got.Spec.Tolerations {
		if tol.Effect == corev1.TaintEffectNoExecute && (tol.TolerationSeconds == nil || *tol.TolerationSeconds != 60) {
			t.Errorf("toleration %v", tol)
		}
	}
}

func TestSkip(t *testing.T) {
	ds := makePod(func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "d", Controller: ptr.To(true)}}
	})
	mirror := makePod(func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} })
	rs := makePod(func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "r", Controller: ptr.To(true)}}
	})
	for _, tt := range []struct {
		pod  *corev1.Pod
		skip bool
	}{{ds, true}, {mirror, true}, {rs, false}, {makePod(), false}} {
		if got, why := Skip(tt.pod); got != tt.skip {
			t.Errorf("Skip(%v) = %v (%s)", tt.pod.OwnerReferences, got, why)
		}
	}
}

func TestMutateUpdateKeepsAdmittedFields(t *testing.T) {
	admitted, err := Mutate(makePod(nodeSelector("disktype", "ssd"), toleration("dedicated")), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	// kubectl apply of the original manifest again: the parked fields come back, our tolerations go.
	reapplied := makePod(nodeSelector("disktype", "ssd"), toleration("dedicated"), toleration("example.com/new"))
	reapplied.Annotations = admitted.Annotations
	got := MutateUpdate(admitted, reapplied)
	want := admitted.DeepCopy()
	want.Spec.Tolerations = append(want.Spec.Tolerations, corev1.Toleration{Key: "example.com/new", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("updated pod (-want +got):\n%s", diff)
	}
	plain := makePod(nodeSelector("a", "b"))
	if got := MutateUpdate(plain, makePod(nodeSelector("c", "d"))); got.Spec.NodeSelector["c"] != "d" {
		t.Error("a pod that never passed the webhook must be left alone")
	}
}

func TestMutateSchedulerName(t *testing.T) {
	opts := DefaultOptions()
	opts.SchedulerName = api.SchedulerName
	for _, tc := range []struct{ name, have, want string }{
		{"unset goes to tether-scheduler", "", api.SchedulerName},
		{"the default scheduler is replaced", corev1.DefaultSchedulerName, api.SchedulerName},
		{"another scheduler is kept", "gang-scheduler", "gang-scheduler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := makePod()
			pod.Spec.SchedulerName = tc.have
			got, err := Mutate(pod, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got.Spec.SchedulerName != tc.want {
				t.Errorf("schedulerName %q, want %q", got.Spec.SchedulerName, tc.want)
			}
			again, err := Mutate(got, opts)
			if err != nil {
				t.Fatal(err)
			}
			if ops := Patch(got, again); len(ops) != 0 {
				t.Errorf("second run patches %v", ops)
			}
			applyPatch(t, pod, got)
		})
	}
	// Off by default: the pod keeps whatever it names.
	if got, _ := Mutate(makePod(), DefaultOptions()); got.Spec.SchedulerName != "" {
		t.Errorf("without --scheduler-name: schedulerName %q", got.Spec.SchedulerName)
	}
}
