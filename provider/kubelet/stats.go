package kubelet

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

// The usage of a virtual node is the usage of its pods in the member, read from the member's metrics.k8s.io
// (metrics-server): one LIST of PodMetrics per scrape, selected by the node's ownership labels. metrics.k8s.io gives
// rates (cores averaged over a window); the kubelet API's formats want cumulative CPU time, which metrics-server on
// the host turns back into a rate. counters integrates the rates into per-container and per-node CPU seconds.

// NodeUsage is what one virtual node's pods use, the source of /stats/summary and /metrics/resource.
type NodeUsage struct {
	Node string
	Time time.Time
	// CPUSeconds is cumulative CPU time, NanoCores the current rate, Memory the working set in bytes.
	CPUSeconds float64
	NanoCores  uint64
	Memory     uint64
	Pods       []PodUsage
}

// PodUsage is one pod's usage, named as in the host.
type PodUsage struct {
	Namespace, Name, UID string
	Time                 time.Time
	CPUSeconds           float64
	NanoCores            uint64
	Memory               uint64
	Containers           []ContainerUsage
}

// ContainerUsage is one container's usage.
type ContainerUsage struct {
	Name       string
	Start      time.Time
	Time       time.Time
	CPUSeconds float64
	NanoCores  uint64
	Memory     uint64
}

// counters turns CPU rates into monotonic CPU-second counters, one per container and one per node. A counter
// not updated for an hour is forgotten (its pod is gone).
type counters struct {
	mu   sync.Mutex
	byID map[string]*counter
}

type counter struct {
	seconds float64
	at      time.Time // the sample time the counter is integrated up to
	seen    time.Time
}

const counterTTL = time.Hour

// processStart is the start time of the virtual nodes' "kubelet".
var processStart = time.Now()

// add integrates cores (a rate) from the counter's last sample time to ts and returns the counter. A new counter
// starts with the sample's window, so the first scrape already shows plausible CPU time.
func (c *counters) add(id string, cores float64, ts time.Time, window time.Duration, now time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[string]*counter{}
	}
	k, ok := c.byID[id]
	switch {
	case !ok:
		k = &counter{seconds: cores * window.Seconds(), at: ts}
		c.byID[id] = k
	case ts.After(k.at):
		k.seconds += cores * ts.Sub(k.at).Seconds()
		k.at = ts
	}
	k.seen = now
	return k.seconds
}

// prune forgets counters not seen since before cutoff.
func (c *counters) prune(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, k := range c.byID {
		if k.seen.Before(cutoff) {
			delete(c.byID, id)
		}
	}
}

// Usage reads the usage of m's pods from its member's metrics.k8s.io.
func (r *Relay) Usage(ctx context.Context, m *Member) (NodeUsage, error) {
	if m.Metrics == nil {
		return NodeUsage{}, fmt.Errorf("member %s: no metrics client", m.Name)
	}
	list, err := m.Metrics.MetricsV1beta1().PodMetricses(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: m.PodSelector})
	if err != nil {
		return NodeUsage{}, fmt.Errorf("member %s: read pod metrics (metrics.k8s.io, served by metrics-server): %w", m.Name, err)
	}
	pods := map[string]*corev1.Pod{}
	if m.OwnedPods != nil {
		owned, err := m.OwnedPods()
		if err != nil {
			return NodeUsage{}, err
		}
		for _, p := range owned {
			pods[p.Namespace+"/"+p.Name] = p
		}
	}
	now := time.Now()
	u := NodeUsage{Node: m.NodeName}
	var nodeCores float64
	var nodeWindow time.Duration
	for _, pm := range list.Items {
		member := pods[pm.Namespace+"/"+pm.Name]
		if m.OwnedPods != nil && member == nil {
			continue // gone, or not (yet) in the cache
		}
		ts, window := pm.Timestamp.Time, pm.Window.Duration
		nodeWindow = max(nodeWindow, window)
		p := PodUsage{Namespace: pm.Namespace, Name: pm.Name, Time: ts}
		if member != nil {
			p.UID = member.Annotations[api.AnnotationHostUID]
		}
		for _, c := range pm.Containers {
			cores := float64(c.Usage.Cpu().ScaledValue(resource.Nano)) / 1e9
			cu := ContainerUsage{
				Name: c.Name, Time: ts, NanoCores: uint64(math.Round(cores * 1e9)), Memory: uint64(max(c.Usage.Memory().Value(), 0)),
				CPUSeconds: r.counters.add(m.NodeName+"/"+pm.Namespace+"/"+pm.Name+"/"+c.Name, cores, ts, window, now),
				Start:      containerStart(member, c.Name),
			}
			p.Containers = append(p.Containers, cu)
			p.CPUSeconds += cu.CPUSeconds
			p.NanoCores += cu.NanoCores
			p.Memory += cu.Memory
			nodeCores += cores
		}
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Name < p.Containers[j].Name })
		u.Pods = append(u.Pods, p)
		u.NanoCores += p.NanoCores
		u.Memory += p.Memory
		if ts.After(u.Time) {
			u.Time = ts
		}
	}
	if u.Time.IsZero() {
		u.Time = now
	}
	u.CPUSeconds = r.counters.add(m.NodeName, nodeCores, u.Time, nodeWindow, now)
	r.counters.prune(now.Add(-counterTTL))
	sort.Slice(u.Pods, func(i, j int) bool {
		if u.Pods[i].Namespace != u.Pods[j].Namespace {
			return u.Pods[i].Namespace < u.Pods[j].Namespace
		}
		return u.Pods[i].Name < u.Pods[j].Name
	})
	return u, nil
}

func containerStart(p *corev1.Pod, name string) time.Time {
	if p == nil {
		return time.Time{}
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name && s.State.Running != nil {
			return s.State.Running.StartedAt.Time
		}
	}
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return time.Time{}
}

// Summary renders usages as the kubelet's /stats/summary. Several virtual nodes on one port are summed into one
// node entry named after the first.
func Summary(usages []NodeUsage) *statsv1alpha1.Summary {
	s := &statsv1alpha1.Summary{}
	var cpuSeconds float64
	var nano, mem uint64
	var at time.Time
	var names []string
	for _, u := range usages {
		names = append(names, u.Node)
		cpuSeconds += u.CPUSeconds
		nano += u.NanoCores
		mem += u.Memory
		if u.Time.After(at) {
			at = u.Time
		}
		for _, p := range u.Pods {
			ps := statsv1alpha1.PodStats{
				PodRef:    statsv1alpha1.PodReference{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
				StartTime: metav1.NewTime(earliestStart(p)),
				CPU:       cpuStats(p.Time, p.NanoCores, p.CPUSeconds),
				Memory:    memoryStats(p.Time, p.Memory),
			}
			for _, c := range p.Containers {
				ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
					Name: c.Name, StartTime: metav1.NewTime(c.Start),
					CPU: cpuStats(c.Time, c.NanoCores, c.CPUSeconds), Memory: memoryStats(c.Time, c.Memory),
				})
			}
			s.Pods = append(s.Pods, ps)
		}
	}
	if len(names) > 0 {
		s.Node.NodeName = names[0]
	}
	if at.IsZero() {
		at = time.Now()
	}
	s.Node.StartTime = metav1.NewTime(processStart)
	s.Node.CPU = cpuStats(at, nano, cpuSeconds)
	s.Node.Memory = memoryStats(at, mem)
	return s
}

func earliestStart(p PodUsage) time.Time {
	var t time.Time
	for _, c := range p.Containers {
		if !c.Start.IsZero() && (t.IsZero() || c.Start.Before(t)) {
			t = c.Start
		}
	}
	return t
}

func cpuStats(at time.Time, nano uint64, seconds float64) *statsv1alpha1.CPUStats {
	return &statsv1alpha1.CPUStats{Time: metav1.NewTime(at), UsageNanoCores: ptr.To(nano),
		UsageCoreNanoSeconds: ptr.To(uint64(math.Round(seconds * 1e9)))}
}

func memoryStats(at time.Time, bytes uint64) *statsv1alpha1.MemoryStats {
	return &statsv1alpha1.MemoryStats{Time: metav1.NewTime(at), WorkingSetBytes: ptr.To(bytes), UsageBytes: ptr.To(bytes)}
}

// ResourceMetrics renders usages as the kubelet's /metrics/resource (what metrics-server scrapes).
func ResourceMetrics(usages []NodeUsage) []*dto.MetricFamily {
	fam := func(name, help string, t dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To(help), Type: t.Enum()}
	}
	nodeCPU := fam("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", dto.MetricType_COUNTER)
	nodeMem := fam("node_memory_working_set_bytes", "Current working set of the node in bytes", dto.MetricType_GAUGE)
	podCPU := fam("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", dto.MetricType_COUNTER)
	podMem := fam("pod_memory_working_set_bytes", "Current working set of the pod in bytes", dto.MetricType_GAUGE)
	ctrCPU := fam("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", dto.MetricType_COUNTER)
	ctrMem := fam("container_memory_working_set_bytes", "Current working set of the container in bytes", dto.MetricType_GAUGE)
	ctrStart := fam("container_start_time_seconds", "Start time of the container since unix epoch in seconds", dto.MetricType_GAUGE)
	scrapeErr := fam("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", dto.MetricType_GAUGE)

	var cpuSeconds float64
	var mem uint64
	var at time.Time
	for _, u := range usages {
		cpuSeconds += u.CPUSeconds
		mem += u.Memory
		if u.Time.After(at) {
			at = u.Time
		}
		for _, p := range u.Pods {
			pl := labelPairs("namespace", p.Namespace, "pod", p.Name)
			podCPU.Metric = append(podCPU.Metric, sample(pl, p.CPUSeconds, p.Time, true))
			podMem.Metric = append(podMem.Metric, sample(pl, float64(p.Memory), p.Time, false))
			for _, c := range p.Containers {
				cl := labelPairs("container", c.Name, "namespace", p.Namespace, "pod", p.Name)
				ctrCPU.Metric = append(ctrCPU.Metric, sample(cl, c.CPUSeconds, c.Time, true))
				ctrMem.Metric = append(ctrMem.Metric, sample(cl, float64(c.Memory), c.Time, false))
				if !c.Start.IsZero() {
					ctrStart.Metric = append(ctrStart.Metric, sample(cl, float64(c.Start.UnixNano())/1e9, c.Time, false))
				}
			}
		}
	}
	if at.IsZero() {
		at = time.Now()
	}
	nodeCPU.Metric = []*dto.Metric{sample(nil, cpuSeconds, at, true)}
	nodeMem.Metric = []*dto.Metric{sample(nil, float64(mem), at, false)}
	scrapeErr.Metric = []*dto.Metric{sample(nil, 0, time.Time{}, false)}
	out := []*dto.MetricFamily{ctrCPU, ctrMem, ctrStart, nodeCPU, nodeMem, podCPU, podMem, scrapeErr}
	kept := out[:0]
	for _, f := range out {
		if len(f.Metric) > 0 {
			kept = append(kept, f)
		}
	}
	return kept
}

func labelPairs(kv ...string) []*dto.LabelPair {
	var out []*dto.LabelPair
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &dto.LabelPair{Name: ptr.To(kv[i]), Value: ptr.To(kv[i+1])})
	}
	return out
}

func sample(labels []*dto.LabelPair, v float64, at time.Time, isCounter bool) *dto.Metric {
	m := &dto.Metric{Label: labels}
	if isCounter {
		m.Counter = &dto.Counter{Value: ptr.To(v)}
	} else {
		m.Gauge = &dto.Gauge{Value: ptr.To(v)}
	}
	if !at.IsZero() {
		m.TimestampMs = ptr.To(at.UnixMilli())
	}
	return m
}
