package memberfit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	kjson "sigs.k8s.io/json"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

// Name is the plugin's name in a KubeSchedulerConfiguration.
const Name = api.SchedulerPlugin

const stateKey fwk.StateKey = "PreFilter" + Name

var (
	_ fwk.PreFilterPlugin   = &Plugin{}
	_ fwk.FilterPlugin      = &Plugin{}
	_ fwk.ScorePlugin       = &Plugin{}
	_ fwk.ScoreExtensions   = &Plugin{}
	_ fwk.EnqueueExtensions = &Plugin{}
	_ fwk.SignPlugin        = &Plugin{}
)

// Plugin is MemberFit.
type Plugin struct {
	hostLevel api.HostLevel
	summaries *summaryCache
}

// New builds the plugin from its args (nil: the defaults), which it validates.
func New(_ context.Context, obj runtime.Object, _ fwk.Handle) (fwk.Plugin, error) {
	args, err := DecodeArgs(obj)
	if err != nil {
		return nil, err
	}
	return &Plugin{hostLevel: api.NewHostLevel(args.NodePrefix, args.KeepLabelKeys), summaries: newSummaryCache()}, nil
}

// DecodeArgs reads the plugin's args strictly (a misspelt field is an error), defaults and validates them.
func DecodeArgs(obj runtime.Object) (Args, error) {
	var args Args
	switch o := obj.(type) {
	case nil:
	case *runtime.Unknown:
		if len(o.Raw) > 0 {
			strict, err := kjson.UnmarshalStrict(o.Raw, &args, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
			if err == nil {
				err = errors.Join(strict...)
			}
			if err != nil {
				return Args{}, fmt.Errorf("%s args: %w", Name, err)
			}
		}
	default:
		return Args{}, fmt.Errorf("%s args: want %T, got %T", Name, &Args{}, obj)
	}
	SetDefaults(&args)
	return args, Validate(args)
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return Name }

// podState is what PreFilter learns of the pod for the cycle: the pod as its member will see it.
type podState struct {
	// err is an invalid parked-fields annotation: no member can take the pod.
	err error
	// requests are the member pod's requests as the member's scheduler counts them (init containers, sidecars,
	// overhead, pod-level resources), without the pod itself.
	requests corev1.ResourceList
	// sel is the member pod's node selector and required node affinity.
	sel selector
	// tolerations are the member pod's.
	tolerations []corev1.Toleration
	// offloadable is false when the pod does not tolerate the virtual-node taint (Filter is skipped then).
	offloadable bool
}

// Clone shares the state: it is never changed after PreFilter.
func (s *podState) Clone() fwk.StateData { return s }

// PreFilter translates the pod as tether-node will (forge.Pod: parked fields restored, virtual-node terms of
// unparked pods dropped) once per cycle. Pods that do not tolerate virtual nodes skip Filter.
func (p *Plugin) PreFilter(_ context.Context, state fwk.CycleState, pod *corev1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	st := p.podState(pod)
	state.Write(stateKey, st)
	if !st.offloadable {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return nil, nil
}

func (p *Plugin) podState(pod *corev1.Pod) *podState {
	virtual := api.Taint()
	st := &podState{offloadable: corev1helpers.TolerationsTolerateTaint(klog.Background(), pod.Spec.Tolerations, &virtual, false)}
	member := pod
	if st.offloadable {
		m, err := forge.Pod(pod, forge.PodOptions{HostLevel: p.hostLevel})
		if err != nil {
			st.err = err
			return st
		}
		member = m
		st.sel = newSelector(member.Spec.NodeSelector, member.Spec.Affinity)
		st.tolerations = member.Spec.Tolerations
	}
	st.requests = resourcehelper.PodRequests(member, resourcehelper.PodResourcesOptions{})
	return st
}

// PreFilterExtensions is nil: the plugin keeps no state that other pods change.
func (p *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

func readState(state fwk.CycleState) (*podState, error) {
	d, err := state.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the cycle state: %w", Name, err)
	}
	st, ok := d.(*podState)
	if !ok {
		return nil, fmt.Errorf("%s: cycle state of type %T", Name, d)
	}
	return st, nil
}

// Filter passes real nodes and virtual nodes without a summary (the member decides); a virtual node with one passes
// when a class of its member's nodes matches the pod's selector, its taints are tolerated, and one of its free
// vectors holds the pod, after the pods bound to the node since the summary was made are taken off.
func (p *Plugin) Filter(_ context.Context, state fwk.CycleState, _ *corev1.Pod, ni fwk.NodeInfo) *fwk.Status {
	node := ni.Node()
	if _, ok := api.MemberOfNode(node, p.hostLevel.VirtualNodePrefix); !ok {
		return nil
	}
	st, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	if !st.offloadable {
		return nil // the framework skips Filter then; the taint keeps the pod off
	}
	if st.err != nil {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, st.err.Error())
	}
	raw := node.Annotations[api.AnnotationNodeSummary]
	if raw == "" {
		return nil
	}
	sum, err := p.summaries.get(node.Name, raw)
	if err != nil {
		// tether-node wrote something this plugin cannot read: the member decides, as without a summary.
		klog.Background().V(2).Info("unreadable node summary", "node", node.Name, "err", err)
		return nil
	}
	code, reason := fit(sum, st, inFlight(sum, ni))
	if code == fwk.Success {
		return nil
	}
	return fwk.NewStatus(code, node.Name+": "+reason)
}

// fit decides whether the pod of st fits some node of the summary, with the free vectors less what the pods in
// flight take.
func fit(sum *summary, st *podState, flight [][]int64) (fwk.Code, string) {
	req, missing := sum.vector(st.requests)
	if len(missing) > 0 {
		return fwk.UnschedulableAndUnresolvable, "no node offers " + strings.Join(missing, ", ")
	}
	req[sum.podsCol]++
	if len(sum.Classes) == 0 {
		return fwk.UnschedulableAndUnresolvable, "no schedulable node"
	}
	free := sum.free(flight)
	matched, tolerated := false, false
	for i, c := range sum.Classes {
		if !st.sel.matches(c.Labels, sum.IgnoredLabels) {
			continue
		}
		matched = true
		if !tolerates(c.Taints, st.tolerations) {
			continue
		}
		tolerated = true
		if fitsAny(free[i], req) {
			return fwk.Success, ""
		}
	}
	with := st.sel.String()
	switch {
	case !matched:
		return fwk.UnschedulableAndUnresolvable, "no node with " + with
	case !tolerated:
		if with == "" {
			return fwk.UnschedulableAndUnresolvable, "no node whose taints the pod tolerates"
		}
		return fwk.UnschedulableAndUnresolvable, "no node with " + with + " whose taints the pod tolerates"
	}
	msg := "no node with " + describe(st.requests) + " free"
	if with != "" {
		msg += " and " + with
	}
	return fwk.Unschedulable, msg
}

// tolerates reports whether the NoSchedule and NoExecute taints of a class are all tolerated.
func tolerates(taints []corev1.Taint, tolerations []corev1.Toleration) bool {
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), taints, tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, false)
	return !untolerated
}

func fitsAny(free [][]int64, req []int64) bool {
	for _, f := range free {
		if fits(f, req) {
			return true
		}
	}
	return false
}

func fits(free, req []int64) bool {
	for i := range req {
		if req[i] > free[i] {
			return false
		}
	}
	return true
}

// describe is a pod's requests as people write them: "3 CPU, 1Gi memory".
func describe(l corev1.ResourceList) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(l)) {
		q := l[name]
		if q.IsZero() {
			continue
		}
		switch name {
		case corev1.ResourceCPU:
			parts = append(parts, q.String()+" CPU")
		default:
			parts = append(parts, q.String()+" "+string(name))
		}
	}
	if len(parts) == 0 {
		return "room for a pod"
	}
	return strings.Join(parts, ", ")
}

// inFlight are the request vectors of the pods on the virtual node that the summary cannot show yet: assumed by
// this scheduler but not bound, or bound after the summary was made (at the summary's second precision, a pod
// bound in that second counts as shown: the error is towards "fits", which the member corrects and the
// descheduler recovers). Their requests come from the scheduler's own cache of them (PodInfo.CalculateResource):
// this runs for every pod and virtual node, and a burst puts many pods in flight.
func inFlight(sum *summary, ni fwk.NodeInfo) [][]int64 {
	var out [][]int64
	at := sum.At.Unix()
	for _, pi := range ni.GetPods() {
		pod := pi.GetPod()
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if bound, ok := scheduledAt(pod); ok && bound <= at {
			continue
		}
		out = append(out, sum.resourceVector(pi.CalculateResource().Resource))
	}
	return out
}

// scheduledAt is when the pod's PodScheduled condition turned True (Unix seconds); ok is false for a pod that is
// only assumed.
func scheduledAt(pod *corev1.Pod) (int64, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.LastTransitionTime.Unix(), c.Status == corev1.ConditionTrue
		}
	}
	return 0, false
}

// scoreScale is the raw score of a node left empty after the pod: shares in millionths.
const scoreScale = 1_000_000

// Score is the share of the node left after placing the pod, by the resource with the least share left (CPU,
// memory, pods, and the extended resources the pod asks for): the dominant resource. It applies to every node, so
// that real nodes are not preferred or avoided for being real.
func (p *Plugin) Score(_ context.Context, state fwk.CycleState, _ *corev1.Pod, ni fwk.NodeInfo) (int64, *fwk.Status) {
	st, err := readState(state)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	return roomLeft(st.requests, ni.GetAllocatable(), ni.GetRequested(), len(ni.GetPods())), nil
}

func roomLeft(req corev1.ResourceList, alloc, used fwk.Resource, pods int) int64 {
	left := int64(scoreScale)
	share := func(alloc, used, want int64) {
		if alloc <= 0 {
			return
		}
		s := (alloc - used - want) * scoreScale / alloc
		left = min(left, max(s, 0))
	}
	share(alloc.GetMilliCPU(), used.GetMilliCPU(), req.Cpu().MilliValue())
	share(alloc.GetMemory(), used.GetMemory(), req.Memory().Value())
	share(int64(alloc.GetAllowedPodNumber()), int64(pods), 1)
	for name, q := range req {
		if a, ok := alloc.GetScalarResources()[name]; ok && !q.IsZero() {
			share(a, used.GetScalarResources()[name], q.Value())
		}
	}
	return left
}

// ScoreExtensions is the plugin itself: MemberFit normalises its scores.
func (p *Plugin) ScoreExtensions() fwk.ScoreExtensions { return p }

// NormalizeScore maps the raw shares onto 0–99 against the largest, and adds 1 to the nodes with the most room.
// On members of thousands of pods one pod moves a share by far less than a point: without that point, equal
// scores would leave the choice to the order of the nodes, and a burst would pile onto one member. The point
// decides only between nodes the other plugins find equal.
func (p *Plugin) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *corev1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	var top int64
	for _, s := range scores {
		top = max(top, s.Score)
	}
	for i := range scores {
		raw := scores[i].Score
		n := int64(0)
		if top > 0 {
			n = raw * (fwk.MaxScore - 1) / top
		}
		if raw == top {
			n++
		}
		scores[i].Score = n
	}
	return nil
}

// EventsToRegister says when a pod this plugin refused may fit: after a virtual node is added or its summary, labels,
// taints or allocatable change, or after a pod leaves a virtual node.
func (p *Plugin) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAnnotation | fwk.UpdateNodeLabel | fwk.UpdateNodeTaint | fwk.UpdateNodeAllocatable},
			QueueingHintFn: p.nodeChanged},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: p.podLeft},
	}, nil
}

func (p *Plugin) nodeChanged(_ klog.Logger, _ *corev1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	n, ok := newObj.(*corev1.Node)
	if !ok {
		return fwk.Queue, nil
	}
	if _, virtual := api.MemberOfNode(n, p.hostLevel.VirtualNodePrefix); !virtual {
		return fwk.QueueSkip, nil
	}
	old, ok := oldObj.(*corev1.Node)
	if !ok || old == nil {
		return fwk.Queue, nil
	}
	// Heartbeats do not change the summary's string: it keeps its time while its content stays.
	if old.Annotations[api.AnnotationNodeSummary] != n.Annotations[api.AnnotationNodeSummary] ||
		!maps.Equal(old.Labels, n.Labels) || !slices.EqualFunc(old.Spec.Taints, n.Spec.Taints, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) }) ||
		!maps.EqualFunc(old.Status.Allocatable, n.Status.Allocatable, func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }) {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

func (p *Plugin) podLeft(_ klog.Logger, _ *corev1.Pod, oldObj, _ any) (fwk.QueueingHint, error) {
	pod, ok := oldObj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" || strings.HasPrefix(pod.Spec.NodeName, p.hostLevel.VirtualNodePrefix) {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// SignPod lets the scheduler batch pods that are the same to this plugin: same parked fields, requests and
// tolerations.
func (p *Plugin) SignPod(_ context.Context, pod *corev1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	return []fwk.SignFragment{
		{Key: "v1.Pod.Annotations." + Name + "()", Value: pod.Annotations[api.AnnotationScheduling]},
		{Key: "v1.Pod.Spec." + Name + "Requests()", Value: resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})},
		{Key: fwk.TolerationsSignerName, Value: fwk.TolerationsSigner(pod)},
	}, nil
}
