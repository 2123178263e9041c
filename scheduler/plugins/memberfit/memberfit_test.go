package memberfit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

// memberNode is a member node with cpu cores free (32 Gi memory, 110 pods), labels and taints.
func memberNode(name string, cpu int64, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	l := map[string]string{corev1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: *resource.NewQuantity(cpu, resource.DecimalSI),
				corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

// virtualNode is member's virtual node carrying the summary of the member nodes, made at at.
func virtualNode(member string, at time.Time, nodes ...*corev1.Node) *corev1.Node {
	name := api.NodeName(api.DefaultNodePrefix, member)
	sum := forge.ComputeSummary(nodes, nil, at)
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: api.NodeLabels(member, name),
			Annotations: map[string]string{api.AnnotationNodeSummary: sum.Encode()}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{api.Taint()}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100"),
			corev1.ResourceMemory: resource.MustParse("100Gi"), corev1.ResourcePods: resource.MustParse("1000")}},
	}
	return n
}

type podOpt func(*corev1.Pod)

func makePod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}},
			Tolerations: api.Tolerations(300)},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withCPU(cores string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cores)}
	}
}

func withRequest(name corev1.ResourceName, q string) podOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Containers[0].Resources.Requests == nil {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{}
		}
		p.Spec.Containers[0].Resources.Requests[name] = resource.MustParse(q)
	}
}

// withParked parks the scheduling fields as tether-webhook does.
func withParked(s api.Scheduling) podOpt {
	return func(p *corev1.Pod) {
		v, _ := s.Encode()
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[api.AnnotationScheduling] = v
	}
}

func withNodeSelector(sel map[string]string) podOpt {
	return func(p *corev1.Pod) { p.Spec.NodeSelector = sel }
}

func withoutTolerations() podOpt { return func(p *corev1.Pod) { p.Spec.Tolerations = nil } }

func newPlugin(t *testing.T) *Plugin {
	t.Helper()
	pl, err := New(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pl.(*Plugin)
}

// filterPod runs PreFilter and Filter for pod against node with pods on it, as the framework does.
func filterPod(t *testing.T, pl *Plugin, pod *corev1.Pod, node *corev1.Node, pods ...*corev1.Pod) *fwk.Status {
	t.Helper()
	state := framework.NewCycleState()
	if _, st := pl.PreFilter(t.Context(), state, pod, nil); !st.IsSuccess() && !st.IsSkip() {
		t.Fatalf("PreFilter: %v", st)
	}
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(node)
	return pl.Filter(t.Context(), state, pod, ni)
}

var (
	ssd       = map[string]string{"disktype": "ssd"}
	dedicated = corev1.Taint{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}
)

func TestFilter(t *testing.T) {
	now := time.Now()
	m1 := virtualNode("m1", now, memberNode("a", 2, nil), memberNode("b", 2, nil), memberNode("c", 2, nil))
	m2 := virtualNode("m2", now, memberNode("d", 4, nil))
	taintedSSD := virtualNode("m1", now, memberNode("a", 8, ssd, dedicated), memberNode("b", 8, nil))
	plainAndSSD := virtualNode("m2", now, memberNode("d", 2, ssd), memberNode("e", 8, nil))
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		node *corev1.Node
		// want is "" for Success, else the code and the message.
		want    fwk.Code
		wantMsg string
	}{
		{"3 CPU do not fit 2+2+2", makePod(withCPU("3")), m1, fwk.Unschedulable, "tether-m1: no node with 3 CPU free"},
		{"3 CPU fit 4", makePod(withCPU("3")), m2, fwk.Success, ""},
		{"2 CPU fit one of 2+2+2", makePod(withCPU("2")), m1, fwk.Success, ""},
		{"parked ssd: no ssd node", makePod(withParked(api.Scheduling{NodeSelector: ssd})), m2, fwk.UnschedulableAndUnresolvable, "tether-m2: no node with disktype=ssd"},
		{"parked ssd on a tainted node", makePod(withParked(api.Scheduling{NodeSelector: ssd})), taintedSSD, fwk.UnschedulableAndUnresolvable,
			"tether-m1: no node with disktype=ssd whose taints the pod tolerates"},
		{"parked ssd with the toleration", makePod(withParked(api.Scheduling{NodeSelector: ssd, Tolerations: []corev1.Toleration{
			{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "batch", Effect: corev1.TaintEffectNoSchedule}}})), taintedSSD, fwk.Success, ""},
		{"3 CPU and ssd: the ssd node has 2", makePod(withCPU("3"), withParked(api.Scheduling{NodeSelector: ssd})), plainAndSSD, fwk.Unschedulable,
			"tether-m2: no node with 3 CPU free and disktype=ssd"},
		{"NotIn ssd", makePod(withCPU("3"), withParked(api.Scheduling{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disktype", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"ssd"}}}}}}}}})),
			plainAndSSD, fwk.Success, ""},
		{"unparked pod with a host-level selector", makePod(withCPU("3"), withNodeSelector(map[string]string{api.LabelMember: "m2"})), m2, fwk.Success, ""},
		{"hostname of a member node is taken as met", makePod(withParked(api.Scheduling{NodeSelector: map[string]string{corev1.LabelHostname: "d"}})), m2, fwk.Success, ""},
		{"an extended resource no node offers", makePod(withRequest("example.com/gpu", "1")), m2, fwk.UnschedulableAndUnresolvable, "tether-m2: no node offers example.com/gpu"},
		{"invalid parked fields", makePod(func(p *corev1.Pod) { p.Annotations = map[string]string{api.AnnotationScheduling: "{nodeSelector"} }), m2,
			fwk.UnschedulableAndUnresolvable, "annotation " + api.AnnotationScheduling},
		{"a real node is left to the other plugins", makePod(withCPU("30")), memberNode("real", 1, nil), fwk.Success, ""},
		{"a virtual node without a summary: the member decides", makePod(withCPU("30")), func() *corev1.Node { n := m2.DeepCopy(); n.Annotations = nil; return n }(), fwk.Success, ""},
		{"a pod that does not tolerate virtual nodes skips Filter", makePod(withCPU("30"), withoutTolerations()), m2, fwk.Success, ""},
		{"init containers count as the scheduler counts them", makePod(withCPU("1"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5")}}}}
		}), m2, fwk.Unschedulable, "tether-m2: no node with 5 CPU free"},
		{"overhead counts", makePod(withCPU("3"), func(p *corev1.Pod) {
			p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}
		}), m2,
			fwk.Unschedulable, "tether-m2: no node with 4500m CPU free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newPlugin(t)
			pod := tc.pod
			if pod.Name == "" {
				pod.Name = "p"
			}
			st := filterPod(t, pl, pod, tc.node)
			if st.Code() != tc.want {
				t.Fatalf("code %v (%s), want %v", st.Code(), st.Message(), tc.want)
			}
			if tc.wantMsg != "" && !strings.Contains(st.Message(), tc.wantMsg) {
				t.Errorf("message %q, want it to contain %q", st.Message(), tc.wantMsg)
			}
		})
	}
}

// bound is a pod on the virtual node, bound at at (nil: only assumed).
func bound(name, cpu string, at *time.Time) *corev1.Pod {
	p := makePod(withCPU(cpu))
	p.Name, p.UID = name, types.UID("uid-"+name)
	p.Spec.NodeName = "tether-m2"
	if at != nil {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(*at)}}
	}
	return p
}

func TestPodsInFlight(t *testing.T) {
	at := time.Now().Truncate(time.Second)
	before, same, after := at.Add(-time.Minute), at.Add(300*time.Millisecond), at.Add(2*time.Second)
	m2 := virtualNode("m2", at, memberNode("d", 4, nil), memberNode("e", 2, nil))
	for _, tc := range []struct {
		name string
		on   []*corev1.Pod
		want fwk.Code
	}{
		{"nothing in flight: 3 CPU fit 4", nil, fwk.Success},
		{"an assumed 2-CPU pod takes the 4", []*corev1.Pod{bound("a", "2", nil)}, fwk.Unschedulable},
		{"a pod bound after the summary counts", []*corev1.Pod{bound("a", "2", &after)}, fwk.Unschedulable},
		{"a pod bound before the summary is in it", []*corev1.Pod{bound("a", "2", &before)}, fwk.Success},
		{"a pod bound in the summary's second counts as shown", []*corev1.Pod{bound("a", "2", &same)}, fwk.Success},
		{"a 1-CPU pod in flight leaves 3", []*corev1.Pod{bound("a", "1", nil)}, fwk.Success},
		{"a pod in flight that fits nowhere takes nothing", []*corev1.Pod{bound("a", "9", nil)}, fwk.Success},
		{"finished pods do not count", []*corev1.Pod{func() *corev1.Pod { p := bound("a", "2", nil); p.Status.Phase = corev1.PodSucceeded; return p }()}, fwk.Success},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := filterPod(t, newPlugin(t), makePod(withCPU("3")), m2, tc.on...)
			if st.Code() != tc.want {
				t.Errorf("code %v (%s), want %v", st.Code(), st.Message(), tc.want)
			}
		})
	}
}

func TestScoreSpreadsAcrossMembers(t *testing.T) {
	pl := newPlugin(t)
	pod := makePod(withCPU("100m"))
	state := framework.NewCycleState()
	pl.PreFilter(t.Context(), state, pod, nil)
	// Two equal members of 12,000 pods: one pod moves the share by far less than a point.
	m1 := framework.NewNodeInfo()
	m1.SetNode(virtualNode("m1", time.Now()))
	m2 := framework.NewNodeInfo()
	m2.SetNode(virtualNode("m2", time.Now()))
	for _, ni := range []*framework.NodeInfo{m1, m2} {
		ni.Node().Status.Allocatable[corev1.ResourcePods] = resource.MustParse("12000")
		ni.SetNode(ni.Node())
	}
	m1.AddPod(bound("x", "100m", nil))
	var scores fwk.NodeScoreList
	for _, ni := range []*framework.NodeInfo{m1, m2} {
		s, st := pl.Score(t.Context(), state, pod, ni)
		if !st.IsSuccess() {
			t.Fatal(st)
		}
		scores = append(scores, fwk.NodeScore{Name: ni.Node().Name, Score: s})
	}
	if scores[0].Score >= scores[1].Score {
		t.Fatalf("raw scores %v: the emptier member should score higher", scores)
	}
	if st := pl.NormalizeScore(t.Context(), state, pod, scores); !st.IsSuccess() {
		t.Fatal(st)
	}
	if scores[1].Score != fwk.MaxScore || scores[0].Score >= scores[1].Score {
		t.Errorf("normalised %v: want tether-m2 at %d and tether-m1 below it", scores, fwk.MaxScore)
	}
}

func TestRoomLeftByDominantResource(t *testing.T) {
	ni := framework.NewNodeInfo()
	ni.SetNode(memberNode("n", 10, nil))
	ni.AddPod(bound("x", "5", nil))
	// 1 CPU more leaves 4 of 10 CPU (40 %); memory and pods are nearly free.
	got := roomLeft(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}, ni.GetAllocatable(), ni.GetRequested(), len(ni.GetPods()))
	if got != 400_000 {
		t.Errorf("roomLeft = %d, want 400000", got)
	}
}

func TestNormalizeScore(t *testing.T) {
	scores := fwk.NodeScoreList{{Name: "a", Score: 500_000}, {Name: "b", Score: 1_000_000}, {Name: "c", Score: 1_000_000}, {Name: "d", Score: 0}}
	if st := newPlugin(t).NormalizeScore(t.Context(), nil, nil, scores); !st.IsSuccess() {
		t.Fatal(st)
	}
	want := fwk.NodeScoreList{{Name: "a", Score: 49}, {Name: "b", Score: 100}, {Name: "c", Score: 100}, {Name: "d", Score: 0}}
	if d := cmp.Diff(want, scores); d != "" {
		t.Errorf("scores (-want +got):\n%s", d)
	}
}

func TestDecodeArgs(t *testing.T) {
	for _, tc := range []struct {
		name, raw, wantErr string
		want               Args
	}{
		{"empty", "", "", Args{NodePrefix: api.DefaultNodePrefix}},
		{"set", `{"nodePrefix":"vk-","keepLabelKeys":["topology.kubernetes.io/region"]}`, "", Args{NodePrefix: "vk-", KeepLabelKeys: []string{"topology.kubernetes.io/region"}}},
		{"misspelt field", `{"nodePrefx":"vk-"}`, `unknown field "nodePrefx"`, Args{}},
		{"bad key", `{"keepLabelKeys":["not a key"]}`, "--" + api.FlagKeepLabelKeys, Args{}},
		{"bad prefix", `{"nodePrefix":"UPPER_"}`, "--" + api.FlagNodePrefix, Args{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeArgs(&runtime.Unknown{Raw: []byte(tc.raw)})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("args (-want +got):\n%s", d)
			}
		})
	}
}

func TestQueueingHints(t *testing.T) {
	pl := newPlugin(t)
	v := virtualNode("m1", time.Now(), memberNode("a", 2, nil))
	heartbeat := v.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	newSummary := virtualNode("m1", time.Now(), memberNode("a", 4, nil))
	real := memberNode("real", 2, nil)
	for _, tc := range []struct {
		name     string
		old, new *corev1.Node
		want     fwk.QueueingHint
	}{
		{"virtual node added", nil, v, fwk.Queue},
		{"new summary", v, newSummary, fwk.Queue},
		{"heartbeat only", v, heartbeat, fwk.QueueSkip},
		{"real node", real, real, fwk.QueueSkip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old any
			if tc.old != nil {
				old = tc.old
			}
			got, err := pl.nodeChanged(klog.Background(), nil, old, tc.new)
			if err != nil || got != tc.want {
				t.Errorf("hint = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if got, _ := pl.podLeft(klog.Background(), nil, bound("a", "1", nil), nil); got != fwk.Queue {
		t.Errorf("a pod leaving a virtual node: %v, want Queue", got)
	}
}

// TestThousands is issue item 6: the summary of a 5,000-node member in 50 classes, its size, and Filter's time
// per pod against it (go test -run Thousands -v -bench . ./plugins/memberfit).
func TestThousands(t *testing.T) {
	n := thousandsNode()
	size := len(n.Annotations[api.AnnotationNodeSummary])
	t.Logf("summary of a 5,000-node member: %d bytes", size)
	if size > 16<<10 {
		t.Errorf("summary of 5,000 nodes is %d bytes, want at most 16 KiB", size)
	}
	if st := filterPod(t, newPlugin(t), makePod(withCPU("3")), n); !st.IsSuccess() {
		t.Errorf("Filter: %v", st)
	}
}

func thousandsNode() *corev1.Node {
	nodes := make([]*corev1.Node, 0, 5000)
	for i := range 5000 {
		// 50 pools, each with nodes whose free CPU and memory trade off: a frontier of many vectors per class.
		n := memberNode(fmt.Sprintf("n-%d", i), int64(2+i%31), map[string]string{"pool": fmt.Sprintf("pool-%d", i%50)})
		n.Status.Allocatable[corev1.ResourceMemory] = *resource.NewQuantity(int64(64-i%29)<<30, resource.BinarySI)
		nodes = append(nodes, n)
	}
	return virtualNode("big", time.Now(), nodes...)
}

func BenchmarkFilter(b *testing.B) {
	pl, _ := New(b.Context(), nil, nil)
	p := pl.(*Plugin)
	node := thousandsNode()
	pod := makePod(withCPU("3"), withParked(api.Scheduling{NodeSelector: map[string]string{"pool": "pool-7"}}))
	state := framework.NewCycleState()
	p.PreFilter(b.Context(), state, pod, nil)
	ni := framework.NewNodeInfo()
	ni.SetNode(node)
	b.ReportAllocs()
	for b.Loop() {
		if st := p.Filter(b.Context(), state, pod, ni); !st.IsSuccess() {
			b.Fatal(st)
		}
	}
}

// BenchmarkFilterBusyNode is Filter on a virtual node holding 500 pods, 100 of them in flight (a burst).
func BenchmarkFilterBusyNode(b *testing.B) {
	pl, _ := New(b.Context(), nil, nil)
	p := pl.(*Plugin)
	at := time.Now().Truncate(time.Second)
	before, after := at.Add(-time.Minute), at.Add(2*time.Second)
	ni := framework.NewNodeInfo()
	ni.SetNode(thousandsNode())
	for i := range 500 {
		when := &before
		if i%5 == 0 {
			when = &after
		}
		ni.AddPod(bound(fmt.Sprintf("p-%d", i), "100m", when))
	}
	pod := makePod(withCPU("3"))
	state := framework.NewCycleState()
	p.PreFilter(b.Context(), state, pod, nil)
	b.ReportAllocs()
	for b.Loop() {
		if st := p.Filter(b.Context(), state, pod, ni); !st.IsSuccess() {
			b.Fatal(st)
		}
	}
}
