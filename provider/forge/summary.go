package forge

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/api"
)

// SchedulableNode reports whether a member node takes new pods at all: Ready and not cordoned (its taints are for
// the pods' tolerations to decide).
func SchedulableNode(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ComputeSummary is the member's node summary (api.NodeSummary) from its nodes and pods, from scratch.
func ComputeSummary(nodes []*corev1.Node, pods []*corev1.Pod, now time.Time) api.NodeSummary {
	free := map[string]corev1.ResourceList{}
	var usable []*corev1.Node
	columns := map[corev1.ResourceName]bool{}
	for _, n := range nodes {
		if !SchedulableNode(n) {
			continue
		}
		usable = append(usable, n)
		free[n.Name] = n.Status.Allocatable.DeepCopy()
		for r := range n.Status.Allocatable {
			columns[r] = true
		}
	}
	for _, p := range pods {
		if f, ok := free[p.Spec.NodeName]; ok && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			subtractFrom(f, podRequests(p))
		}
	}
	s := api.NodeSummary{At: metav1.NewTime(now), Resources: summaryColumns(columns)}
	ignored := ignoredLabels(usable)
	s.IgnoredLabels = ignored
	classes := map[string]*api.NodeClass{}
	var order []string
	for _, n := range usable {
		labels := maps.Clone(n.Labels)
		delete(labels, corev1.LabelHostname)
		for _, k := range ignored {
			delete(labels, k)
		}
		taints := slices.Clone(n.Spec.Taints)
		for i := range taints {
			taints[i].TimeAdded = nil
		}
		slices.SortFunc(taints, func(a, b corev1.Taint) int {
			return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(string(a.Effect), string(b.Effect)), strings.Compare(a.Value, b.Value))
		})
		key := classKey(labels, taints)
		c, ok := classes[key]
		if !ok {
			c = &api.NodeClass{Labels: labels, Taints: taints}
			if len(c.Labels) == 0 {
				c.Labels = nil
			}
			if len(c.Taints) == 0 {
				c.Taints = nil
			}
			classes[key] = c
			order = append(order, key)
		}
		c.Nodes++
		c.Free = append(c.Free, vectorOf(free[n.Name], s.Resources))
	}
	slices.Sort(order)
	for _, k := range order {
		c := classes[k]
		c.Free = frontier(c.Free, api.MaxSummaryPoints)
		s.Classes = append(s.Classes, *c)
	}
	return s
}

// summaryColumns puts cpu, memory and pods first, then every other resource by name.
func summaryColumns(have map[corev1.ResourceName]bool) []corev1.ResourceName {
	out := []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods}
	var rest []corev1.ResourceName
	for r := range have {
		if !slices.Contains(out, r) {
			rest = append(rest, r)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// ignoredLabels are the label keys to leave out so that the nodes fall into at most api.MaxSummaryClasses
// classes: the key with the most distinct values first.
func ignoredLabels(nodes []*corev1.Node) []string {
	var ignored []string
	for {
		classes := map[string]bool{}
		values := map[string]map[string]bool{}
		for _, n := range nodes {
			var b strings.Builder
			for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
				if k == corev1.LabelHostname || slices.Contains(ignored, k) {
					continue
				}
				b.WriteString(k + "=" + n.Labels[k] + "\x00")
				if values[k] == nil {
					values[k] = map[string]bool{}
				}
				values[k][n.Labels[k]] = true
			}
			for _, t := range n.Spec.Taints {
				b.WriteString(t.Key + ":" + t.Value + ":" + string(t.Effect) + "\x00")
			}
			classes[b.String()] = true
		}
		if len(classes) <= api.MaxSummaryClasses || len(values) == 0 {
			slices.Sort(ignored)
			return ignored
		}
		worst, most := "", 0
		for _, k := range slices.Sorted(maps.Keys(values)) {
			if len(values[k]) > most {
				worst, most = k, len(values[k])
			}
		}
		ignored = append(ignored, worst)
	}
}

func classKey(labels map[string]string, taints []corev1.Taint) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k + "=" + labels[k] + "\x00")
	}
	b.WriteString("\x01")
	for _, t := range taints {
		b.WriteString(t.Key + ":" + t.Value + ":" + string(t.Effect) + "\x00")
	}
	return b.String()
}

func vectorOf(l corev1.ResourceList, columns []corev1.ResourceName) []int64 {
	v := make([]int64, len(columns))
	for i, r := range columns {
		q, ok := l[r]
		if !ok {
			continue
		}
		if r == corev1.ResourceCPU {
			v[i] = max(q.MilliValue(), 0)
		} else {
			v[i] = max(q.Value(), 0)
		}
	}
	return v
}

// frontier keeps the vectors no other vector dominates (at least as large everywhere), at most limit of them:
// beyond that, neighbours (by the first column) are merged into their component-wise maximum, which can only
// over-state the room.
func frontier(vs [][]int64, limit int) [][]int64 {
	slices.SortFunc(vs, func(a, b []int64) int { return slices.Compare(b, a) }) // largest first
	var out [][]int64
	for _, v := range vs {
		dominated := slices.ContainsFunc(out, func(f []int64) bool { return dominates(f, v) })
		if !dominated {
			out = append(out, v)
		}
	}
	if len(out) <= limit {
		return out
	}
	merged := make([][]int64, 0, limit)
	per := (len(out) + limit - 1) / limit
	for i := 0; i < len(out); i += per {
		m := slices.Clone(out[i])
		for _, v := range out[i+1 : min(i+per, len(out))] {
			for j := range m {
				m[j] = max(m[j], v[j])
			}
		}
		merged = append(merged, m)
	}
	return merged
}

func dominates(a, b []int64) bool {
	for i := range a {
		if a[i] < b[i] {
			return false
		}
	}
	return true
}
