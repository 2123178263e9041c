package memberunschedulable

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/tetherkube/tether/api"
)

// memberOf is the member of a Tether virtual node, or "" for any other node.
func memberOf(n *corev1.Node) string {
	if n.Labels[api.NodeTypeKey] != api.NodeType {
		return ""
	}
	return n.Labels[api.LabelMember]
}

// requests are what the scheduler counts for the pod: the sum of its containers, or the largest init container if
// more (sidecars included), plus its overhead.
func requests(pod *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

// fit is the verdict on one candidate member.
type fit struct {
	node string
	// why is empty when the member can take the pod; else a short reason ("at most 2 CPU free on one node").
	why string
	// short are the resources it lacks.
	short []corev1.ResourceName
}

// judge tells whether virtual node n (of another member than the pod's) can take the pod: the node accepts new
// pods (Ready, not cordoned, no taint the pod does not tolerate), the pod's own constraints on the virtual node
// (nodeSelector and required node affinity, tether.io/member included) match it, and some node of that member has
// every requested resource free, by the node's fragmentation digest.
func judge(pod *corev1.Pod, req corev1.ResourceList, n *corev1.Node) fit {
	f := fit{node: n.Name}
	switch {
	case n.Spec.Unschedulable:
		f.why = "cordoned"
		return f
	case !ready(n):
		f.why = "not Ready"
		return f
	}
	if t, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), n.Spec.Taints, pod.Spec.Tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, false); untolerated {
		f.why = "taint " + t.ToString()
		return f
	}
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(n); err != nil || !ok {
		f.why = "excluded by the pod's node selector or affinity"
		return f
	}
	raw, ok := n.Annotations[api.AnnotationFragments]
	if !ok {
		f.why = "no " + api.AnnotationFragments + " digest"
		return f
	}
	frag, err := api.ParseFragments(raw)
	if err != nil {
		f.why = err.Error()
		return f
	}
	if frag.UsableNodes < 1 {
		f.why = "no usable node"
		return f
	}
	var lacks []string
	for _, name := range slices.Sorted(maps.Keys(req)) {
		want := req[name]
		if want.IsZero() {
			continue
		}
		have, ok := frag.LargestFree[name]
		if !ok {
			have = resource.Quantity{}
		}
		if have.Cmp(want) < 0 {
			f.short = append(f.short, name)
			lacks = append(lacks, "at most "+amount(name, have))
		}
	}
	if pods, ok := frag.LargestFree[corev1.ResourcePods]; ok && pods.Value() < 1 {
		f.short = append(f.short, corev1.ResourcePods)
		lacks = append(lacks, "no pod slot")
	}
	if len(lacks) > 0 {
		f.why = strings.Join(lacks, ", ") + " free on one node"
	}
	return f
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// amount says a quantity of a resource the way people read it: "3 CPU", "4Gi memory".
func amount(name corev1.ResourceName, q resource.Quantity) string {
	switch name {
	case corev1.ResourceCPU:
		return q.String() + " CPU"
	default:
		return q.String() + " " + string(name)
	}
}

// noFitMessage explains why no other member can take the pod: "no other member has a node with 3 CPU free
// (tether-m2: at most 2 CPU free on one node)".
func noFitMessage(req corev1.ResourceList, verdicts []fit) string {
	if len(verdicts) == 0 {
		return "no other member to move it to"
	}
	// The resources every member that passed the constraints lacks, for the headline.
	var short []corev1.ResourceName
	constrained := true
	for _, v := range verdicts {
		if len(v.short) == 0 {
			continue
		}
		constrained = false
		for _, r := range v.short {
			if !slices.Contains(short, r) {
				short = append(short, r)
			}
		}
	}
	var details []string
	for _, v := range verdicts {
		details = append(details, v.node+": "+v.why)
	}
	if constrained {
		return "no other member can take it (" + strings.Join(details, "; ") + ")"
	}
	slices.Sort(short)
	var needs []string
	for _, r := range short {
		if r == corev1.ResourcePods {
			needs = append(needs, "a pod slot")
			continue
		}
		needs = append(needs, amount(r, req[r]))
	}
	return fmt.Sprintf("no other member has a node with %s free (%s)", strings.Join(needs, " and "), strings.Join(details, "; "))
}
