package memberunschedulable

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/descheduler/pkg/descheduler/evictions"
	podutil "sigs.k8s.io/descheduler/pkg/descheduler/pod"
	frameworktypes "sigs.k8s.io/descheduler/pkg/framework/types"

	"github.com/tetherkube/tether/api"
)

// PluginName is the plugin's name in the descheduler policy.
const PluginName = "MemberUnschedulable"

// Reasons of the events the plugin records on pods.
const (
	// ReasonEvicted: the pod was evicted; the message names the member it leaves and the one that can take it.
	ReasonEvicted = "EvictedFromMember"
	// ReasonNoMemberFits: the pod stays, no other member can take it (recorded once per pod).
	ReasonNoMemberFits = "NoOtherMemberFits"
	// ReasonBlocked: the eviction was refused (a PodDisruptionBudget, an evictor limit, an error).
	ReasonBlocked = "EvictionBlocked"
	// evictionReason is the reason the evictor records and puts on the Eviction.
	evictionReason = "UnschedulableInMember"
	eventAction    = "Descheduling"
)

var _ frameworktypes.DeschedulePlugin = &MemberUnschedulable{}

// MemberUnschedulable evicts pods that their member cannot place when another member can.
type MemberUnschedulable struct {
	logger    klog.Logger
	handle    frameworktypes.Handle
	args      *MemberUnschedulableArgs
	podFilter podutil.FilterFunc
	nodes     corelisters.NodeLister
	pdbs      policylisters.PodDisruptionBudgetLister
	avoid     *avoidStore
	recorder  events.EventRecorder
	now       func() time.Time

	mu sync.Mutex
	// reported holds, per pod, the last message recorded as an event about it, so that a pod that stays stuck gets
	// one event and not one per descheduling interval.
	reported map[types.UID]string
}

// New builds the plugin from validated, defaulted arguments.
func New(ctx context.Context, args runtime.Object, handle frameworktypes.Handle) (frameworktypes.Plugin, error) {
	a, ok := args.(*MemberUnschedulableArgs)
	if !ok {
		return nil, fmt.Errorf("want args of type MemberUnschedulableArgs, got %T", args)
	}
	a = a.DeepCopy()
	SetDefaults_MemberUnschedulableArgs(a)
	if err := ValidateMemberUnschedulableArgs(a); err != nil {
		return nil, err
	}
	var include, exclude sets.Set[string]
	if a.Namespaces != nil {
		include, exclude = sets.New(a.Namespaces.Include...), sets.New(a.Namespaces.Exclude...)
	}
	p := &MemberUnschedulable{
		logger:   klog.FromContext(ctx).WithValues("plugin", PluginName),
		handle:   handle,
		args:     a,
		nodes:    handle.SharedInformerFactory().Core().V1().Nodes().Lister(),
		pdbs:     handle.SharedInformerFactory().Policy().V1().PodDisruptionBudgets().Lister(),
		avoid:    &avoidStore{client: handle.ClientSet(), namespace: a.AvoidNamespace, name: a.AvoidConfigMap},
		now:      time.Now,
		reported: map[types.UID]string{},
	}
	filter, err := podutil.NewOptions().
		WithFilter(podutil.WrapFilterFuncs(p.stuck, handle.Evictor().Filter)).
		WithNamespaces(include).
		WithoutNamespaces(exclude).
		WithLabelSelector(a.LabelSelector).
		BuildFilterFunc()
	if err != nil {
		return nil, fmt.Errorf("pod filter: %w", err)
	}
	p.podFilter = filter
	// The recorder lives as long as the descheduler (ctx is its lifetime). In a dry run the handle's client is the
	// descheduler's fake one, so nothing is recorded in the cluster.
	broadcaster := events.NewEventBroadcasterAdapter(handle.ClientSet())
	broadcaster.StartRecordingToSink(ctx.Done())
	p.recorder = broadcaster.NewRecorder(api.DeschedulerReportingController)
	registerMetrics()
	return p, nil
}

// Name is the plugin's name.
func (p *MemberUnschedulable) Name() string { return PluginName }

// unschedulableSince is when the member scheduler started to leave the pod unschedulable, or zero.
func unschedulableSince(pod *corev1.Pod) time.Time {
	if pod.Status.Phase != corev1.PodPending || pod.DeletionTimestamp != nil {
		return time.Time{}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if c.LastTransitionTime.IsZero() {
				return pod.CreationTimestamp.Time
			}
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// stuck: unschedulable in the member for longer than UnschedulableFor, and owned by a controller unless pods
// without one may go.
func (p *MemberUnschedulable) stuck(pod *corev1.Pod) bool {
	since := unschedulableSince(pod)
	if since.IsZero() || p.now().Sub(since) <= p.args.UnschedulableFor.Duration {
		return false
	}
	return p.args.EvictPodsWithoutController || metav1.GetControllerOf(pod) != nil
}

// Deschedule looks at the pods on the virtual nodes among nodes.
func (p *MemberUnschedulable) Deschedule(ctx context.Context, nodes []*corev1.Node) *frameworktypes.Status {
	logger := klog.FromContext(klog.NewContext(ctx, p.logger)).WithValues("ExtensionPoint", frameworktypes.DescheduleExtensionPoint)
	ctx = klog.NewContext(ctx, logger)
	all, err := p.nodes.List(labels.SelectorFromSet(labels.Set{api.NodeTypeKey: api.NodeType}))
	if err != nil {
		return &frameworktypes.Status{Err: fmt.Errorf("list virtual nodes: %w", err)}
	}
	seen := map[types.UID]bool{}
	defer p.forget(seen)
	var rec api.Avoid // read once per cycle, and only when some pod is stuck
	for _, node := range nodes {
		member := memberOf(node)
		if member == "" {
			continue
		}
		pods, err := podutil.ListAllPodsOnANode(node.Name, p.handle.GetPodsAssignedToNodeFunc(), p.podFilter)
		if err != nil {
			return &frameworktypes.Status{Err: fmt.Errorf("list pods on %s: %w", node.Name, err)}
		}
		// The longest stuck first, should the evictor's limits or a PDB stop the cycle.
		slices.SortStableFunc(pods, func(a, b *corev1.Pod) int { return unschedulableSince(a).Compare(unschedulableSince(b)) })
		for _, pod := range pods {
			seen[pod.UID] = true
			if rec == nil {
				if rec, err = p.avoid.load(ctx); err != nil {
					return &frameworktypes.Status{Err: err}
				}
			}
			if stop := p.decide(ctx, pod, member, all, rec); stop {
				return nil
			}
		}
	}
	return nil
}

// decide decides for one stuck pod; it reports whether the cycle must stop (the evictor's total limit).
func (p *MemberUnschedulable) decide(ctx context.Context, pod *corev1.Pod, member string, all []*corev1.Node, rec api.Avoid) bool {
	logger := klog.FromContext(ctx).WithValues("pod", klog.KObj(pod), "member", member)
	now := p.now()
	stuckFor := now.Sub(unschedulableSince(pod)).Round(time.Second)
	owner := metav1.GetControllerOf(pod)
	var avoided []string
	if owner != nil {
		avoided = rec.Members(string(owner.UID), now)
	}
	req := requests(pod)
	var verdicts []fit
	target := ""
	for _, n := range all {
		m := memberOf(n)
		if m == "" || m == member || slices.Contains(avoided, m) {
			continue
		}
		f := judge(pod, req, n)
		verdicts = append(verdicts, f)
		if f.why == "" && target == "" {
			target = n.Name
		}
	}
	if target == "" {
		why := noFitMessage(req, verdicts)
		decisions.WithLabelValues(DecisionNoMemberFit, member).Inc()
		logger.V(2).Info("not evicting: no other member can take the pod", "reason", why)
		p.reportOnce(pod, corev1.EventTypeWarning, ReasonNoMemberFits, why,
			fmt.Sprintf("unschedulable in member %s for %s and not evicted: %s", member, stuckFor, why))
		return false
	}
	if pdb := p.blockingPDB(pod); pdb != "" {
		decisions.WithLabelValues(DecisionPDB, member).Inc()
		logger.Info("not evicting: PodDisruptionBudget", "pdb", pdb)
		p.reportOnce(pod, corev1.EventTypeWarning, ReasonBlocked, "pdb "+pdb,
			fmt.Sprintf("unschedulable in member %s for %s, %s could take it, but PodDisruptionBudget %s allows no disruption", member, stuckFor, target, pdb))
		return false
	}
	// The record goes first, so that the webhook knows it when the controller creates the replacement.
	until := now.Add(p.args.AvoidFor.Duration)
	var undo func(api.Avoid)
	if owner != nil && p.args.AvoidFor.Duration > 0 {
		if err := p.avoid.update(ctx, now, func(a api.Avoid) {
			undo = undoFor(a, string(owner.UID), member)
			a.Add(string(owner.UID), api.AvoidOwner{Kind: owner.Kind, Namespace: pod.Namespace, Name: owner.Name}, member, until)
		}); err != nil {
			decisions.WithLabelValues(DecisionError, member).Inc()
			logger.Error(err, "not evicting: the avoid record could not be written")
			return false
		}
	}
	err := p.handle.Evictor().Evict(ctx, pod, evictions.EvictOptions{StrategyName: PluginName, Reason: evictionReason})
	if err == nil {
		decisions.WithLabelValues(DecisionEvicted, member).Inc()
		msg := fmt.Sprintf("unschedulable in member %s for %s: evicted, %s can take it", member, stuckFor, target)
		if undo != nil {
			msg += fmt.Sprintf("; new pods of %s %s avoid %s until %s", owner.Kind, owner.Name, member, until.UTC().Format(time.RFC3339))
		}
		logger.Info("evicted a pod its member cannot place", "target", target, "unschedulableFor", stuckFor)
		p.recorder.Eventf(pod, nil, corev1.EventTypeNormal, ReasonEvicted, eventAction, "%s", msg)
		return false
	}
	if undo != nil {
		if uerr := p.avoid.update(ctx, p.now(), undo); uerr != nil {
			logger.Error(uerr, "could not take back the avoid entry of a pod that was not evicted")
		}
	}
	var node *evictions.EvictionNodeLimitError
	var ns *evictions.EvictionNamespaceLimitError
	var total *evictions.EvictionTotalLimitError
	switch {
	case errors.As(err, &node), errors.As(err, &ns), errors.As(err, &total):
		decisions.WithLabelValues(DecisionLimit, member).Inc()
		logger.V(2).Info("not evicting: evictor limit", "limit", err.Error())
		p.reportOnce(pod, corev1.EventTypeNormal, ReasonBlocked, "limit",
			fmt.Sprintf("unschedulable in member %s for %s, %s could take it, but not evicted this interval: %v", member, stuckFor, target, err))
		return total != nil
	case strings.Contains(err.Error(), "disruption budget"):
		decisions.WithLabelValues(DecisionPDB, member).Inc()
		p.reportOnce(pod, corev1.EventTypeWarning, ReasonBlocked, "refused",
			fmt.Sprintf("unschedulable in member %s for %s, %s could take it, but the eviction was refused: %v", member, stuckFor, target, err))
	default:
		decisions.WithLabelValues(DecisionError, member).Inc()
		logger.Error(err, "eviction failed")
		p.reportOnce(pod, corev1.EventTypeWarning, ReasonBlocked, "error",
			fmt.Sprintf("unschedulable in member %s for %s, %s could take it, but the eviction failed: %v", member, stuckFor, target, err))
	}
	return false
}

// undoFor returns what puts the record's entry of (uid, member) back as it is in a now.
func undoFor(a api.Avoid, uid, member string) func(api.Avoid) {
	prev, had := a[uid].Members[member]
	return func(b api.Avoid) {
		e, ok := b[uid]
		if !ok {
			return
		}
		if had {
			e.Members[member] = prev
		} else {
			delete(e.Members, member)
		}
	}
}

// blockingPDB names a PodDisruptionBudget of the pod that allows no disruption now, or "".
func (p *MemberUnschedulable) blockingPDB(pod *corev1.Pod) string {
	pdbs, err := p.pdbs.PodDisruptionBudgets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return ""
	}
	for _, pdb := range pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		if pdb.Status.DisruptionsAllowed < 1 {
			return pdb.Name
		}
	}
	return ""
}

// reportOnce records an event unless one of that reason and key (the message without what changes every cycle)
// was recorded for the pod already.
func (p *MemberUnschedulable) reportOnce(pod *corev1.Pod, typ, reason, key, msg string) {
	key = reason + ": " + key
	p.mu.Lock()
	same := p.reported[pod.UID] == key
	p.reported[pod.UID] = key
	p.mu.Unlock()
	if !same {
		p.recorder.Eventf(pod, nil, typ, reason, eventAction, "%s", msg)
	}
}

// forget drops what was reported about pods that are not stuck any more.
func (p *MemberUnschedulable) forget(seen map[types.UID]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid := range p.reported {
		if !seen[uid] {
			delete(p.reported, uid)
		}
	}
}
