package forge

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/tetherkube/tether/api"
)

// Capacity is what a virtual node offers the host scheduler.
type Capacity struct {
	// Allocatable = Σ allocatable of usable member nodes − requests of member pods on them that this host's
	// Tether did not create (the host scheduler already counts ours). Never negative.
	Allocatable corev1.ResourceList
	// Fragments is the fragmentation digest.
	Fragments api.Fragments
	// UsableNodes names the member nodes counted.
	UsableNodes []string
	// OS, Arch, OSImage, Kernel and Runtime are the most common ones among usable nodes (empty when there are
	// none): what `kubectl get nodes -o wide` shows of the virtual node.
	OS, Arch, OSImage, Kernel, Runtime string
}

// UsableNode reports whether a member node can take new pods: Ready, schedulable, no NoSchedule or NoExecute taint.
func UsableNode(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return false
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ComputeCapacity recomputes a virtual node's capacity from the member's nodes and pods, from scratch.
func ComputeCapacity(nodes []*corev1.Node, pods []*corev1.Pod, owner api.Owner) Capacity {
	usable := map[string]corev1.ResourceList{} // node → free
	var names []string
	total := corev1.ResourceList{}
	osCount, archCount, imageCount, kernelCount, runtimeCount := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	for _, n := range nodes {
		if !UsableNode(n) {
			continue
		}
		names = append(names, n.Name)
		usable[n.Name] = n.Status.Allocatable.DeepCopy()
		addTo(total, n.Status.Allocatable)
		osCount[n.Status.NodeInfo.OperatingSystem]++
		archCount[n.Status.NodeInfo.Architecture]++
		imageCount[n.Status.NodeInfo.OSImage]++
		kernelCount[n.Status.NodeInfo.KernelVersion]++
		runtimeCount[n.Status.NodeInfo.ContainerRuntimeVersion]++
	}
	for _, p := range pods {
		free, ok := usable[p.Spec.NodeName]
		if !ok || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		req := podRequests(p)
		subtractFrom(free, req)
		if !owner.OwnsForCluster(p) {
			subtractFrom(total, req)
		}
	}
	frag := api.Fragments{UsableNodes: len(names), LargestFree: corev1.ResourceList{}}
	for _, free := range usable {
		for name, q := range free {
			if cur, ok := frag.LargestFree[name]; !ok || q.Cmp(cur) > 0 {
				frag.LargestFree[name] = q
			}
		}
	}
	slices.Sort(names)
	return Capacity{Allocatable: clampZero(total), Fragments: api.Fragments{UsableNodes: frag.UsableNodes, LargestFree: clampZero(frag.LargestFree)},
		UsableNodes: names, OS: mostCommon(osCount), Arch: mostCommon(archCount), OSImage: mostCommon(imageCount),
		Kernel: mostCommon(kernelCount), Runtime: mostCommon(runtimeCount)}
}

// podRequests are a pod's effective requests (containers, init containers, overhead) plus one "pods".
func podRequests(p *corev1.Pod) corev1.ResourceList {
	req := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
	req[corev1.ResourcePods] = *resource.NewQuantity(1, resource.DecimalSI)
	return req
}

func addTo(dst, src corev1.ResourceList) {
	for name, q := range src {
		cur := dst[name]
		cur.Add(q)
		dst[name] = cur
	}
}

// subtractFrom subtracts the resources dst has; requests of resources a node does not offer do not count.
func subtractFrom(dst, src corev1.ResourceList) {
	for name, q := range src {
		if cur, ok := dst[name]; ok {
			cur.Sub(q)
			dst[name] = cur
		}
	}
}

func clampZero(l corev1.ResourceList) corev1.ResourceList {
	out := maps.Clone(l)
	for name, q := range out {
		if q.Sign() < 0 {
			out[name] = *resource.NewQuantity(0, q.Format)
		}
	}
	return out
}

func mostCommon(counts map[string]int) string {
	best, n := "", 0
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if counts[k] > n {
			best, n = k, counts[k]
		}
	}
	return best
}
