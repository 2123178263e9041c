package forge

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

var testOwner = api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}

type podOpt func(*corev1.Pod)

func makePod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "uid-1", Labels: map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web", UID: "rs"}}, ResourceVersion: "42"},
		Spec: corev1.PodSpec{
			NodeName:   "tether-m1",
			Containers: []corev1.Container{{Name: "app", Image: "web:1"}},
			Tolerations: []corev1.Toleration{
				{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: api.TaintValue, Effect: corev1.TaintEffectNoSchedule},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withNodeSelector(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func withRequiredTerms(terms ...corev1.NodeSelectorTerm) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
}

func withAnnotation(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func withToleration(t corev1.Toleration) podOpt {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, t) }
}

func in(key string, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
}

func term(reqs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: reqs}
}

func TestPodMetadataAndSpec(t *testing.T) {
	host := makePod(func(p *corev1.Pod) {
		p.Spec.SchedulerName = "tether-scheduler"
		p.Spec.PriorityClassName = "high"
		p.Spec.Priority = ptr.To[int32](1000)
		p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/gate"}}
		p.Spec.Volumes = []corev1.Volume{
			{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}},
			{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets"}, {Name: "data", MountPath: "/data"}}
		p.Status.Phase = corev1.PodRunning
	})
	got, err := Pod(host, PodOptions{Owner: testOwner, HostLevel: api.DefaultHostLevel()})
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop",
			Labels:      map[string]string{"app": "web", api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: "host-1", api.LabelNode: "tether-m1"},
			Annotations: map[string]string{api.AnnotationHostUID: "uid-1"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "web:1", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("member pod (-want +got):\n%s", diff)
	}
	if host.Spec.NodeName != "tether-m1" || len(host.Spec.Tolerations) != 1 || len(host.Spec.Volumes) != 2 {
		t.Error("Pod changed its input")
	}
}

func TestPodKeepsSystemPriorityClass(t *testing.T) {
	got, err := Pod(makePod(func(p *corev1.Pod) { p.Spec.PriorityClassName = "system-node-critical" }), PodOptions{Owner: testOwner})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.PriorityClassName != "system-node-critical" || got.Spec.Priority != nil {
		t.Errorf("priority class %q priority %v", got.Spec.PriorityClassName, got.Spec.Priority)
	}
}

func TestPodSchedulingFields(t *testing.T) {
	ssd := corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ssd", Effect: corev1.TaintEffectNoSchedule}
	zone := term(in("topology.kubernetes.io/zone", "a"))
	tests := []struct {
		name         string
		host         *corev1.Pod
		wantSelector map[string]string
		wantAffinity *corev1.Affinity
		wantTols     []corev1.Toleration
		wantErr      string
	}{{
		name:         "no annotation: own fields kept",
		host:         makePod(withNodeSelector("disktype", "ssd")),
		wantSelector: map[string]string{"disktype": "ssd"},
	}, {
		name:         "no annotation: host-level nodeSelector keys dropped",
		host:         makePod(withNodeSelector("disktype", "ssd", api.LabelMember, "m1", "type", "virtual-kubelet", "kubernetes.io/hostname", "tether-m1")),
		wantSelector: map[string]string{"disktype": "ssd"},
	}, {
		name:         "no annotation: hostname of a member node is not host-level",
		host:         makePod(withNodeSelector("kubernetes.io/hostname", "m1-node-0")),
		wantSelector: map[string]string{"kubernetes.io/hostname": "m1-node-0"},
	}, {
		name: "no annotation: host-level expressions cut from a term, others kept",
		host: makePod(withRequiredTerms(term(in(api.LabelMember, "m1"), in("topology.kubernetes.io/zone", "a")))),
		wantAffinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{zone}}}},
	}, {
		name: "no annotation: a term only on host-level keys satisfies the requirement",
		host: makePod(withRequiredTerms(zone, term(in(api.LabelMember, "m1")))),
	}, {
		name: "annotation restores parked fields and adds tolerations",
		host: makePod(withNodeSelector(api.LabelMember, "m2"), withRequiredTerms(term(in(api.LabelMember, "m2"))),
			withAnnotation(api.AnnotationScheduling, `{"nodeSelector":{"disktype":"ssd"},"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"topology.kubernetes.io/zone","operator":"In","values":["a"]}]}]}}},"tolerations":[{"key":"dedicated","operator":"Equal","value":"ssd","effect":"NoSchedule"}]}`)),
		wantSelector: map[string]string{"disktype": "ssd"},
		wantAffinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{zone}}}},
		wantTols: []corev1.Toleration{ssd},
	}, {
		name:     "annotation: a toleration the pod has already is not doubled",
		host:     makePod(withToleration(ssd), withAnnotation(api.AnnotationScheduling, `{"tolerations":[{"key":"dedicated","operator":"Equal","value":"ssd","effect":"NoSchedule"}]}`)),
		wantTols: []corev1.Toleration{ssd},
	}, {
		name:    "malformed annotation",
		host:    makePod(withAnnotation(api.AnnotationScheduling, `{"nodeSelector":`)),
		wantErr: "annotation tether.io/scheduling",
	}, {
		name:    "unknown field in annotation",
		host:    makePod(withAnnotation(api.AnnotationScheduling, `{"nodeselector":{}}`)),
		wantErr: "unknown field",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Pod(tt.host, PodOptions{Owner: testOwner, HostLevel: api.DefaultHostLevel()})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantSelector, got.Spec.NodeSelector); diff != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantAffinity, got.Spec.Affinity); diff != "" {
				t.Errorf("affinity (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTols, got.Spec.Tolerations); diff != "" {
				t.Errorf("tolerations (-want +got):\n%s", diff)
			}
			if _, ok := got.Annotations[api.AnnotationScheduling]; ok {
				t.Error("member pod keeps the scheduling annotation")
			}
		})
	}
}

func TestPodSpecChanges(t *testing.T) {
	host := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")}}}},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "busybox"}}}}}
	member := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}
	resize, added := PodSpecChanges(host, member)
	if !resize || len(added) != 1 || added[0].Name != "dbg" || added[0].Image != "busybox" {
		t.Errorf("resize %v, added %v: want a resize and the ephemeral container dbg", resize, added)
	}
	member.Spec.Containers[0].Resources = *host.Spec.Containers[0].Resources.DeepCopy()
	member.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg"}}}
	if resize, added := PodSpecChanges(host, member); resize || len(added) != 0 {
		t.Errorf("in step: resize %v, added %v", resize, added)
	}
}
