package memberfit

import (
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/api"
)

// summary is a parsed api.NodeSummary with its column index.
type summary struct {
	api.NodeSummary
	col     map[corev1.ResourceName]int
	podsCol int
}

func parseSummary(raw string) (*summary, error) {
	s, err := api.ParseNodeSummary(raw)
	if err != nil {
		return nil, err
	}
	out := &summary{NodeSummary: s, col: make(map[corev1.ResourceName]int, len(s.Resources))}
	for i, r := range s.Resources {
		out.col[r] = i
	}
	// A summary without a pods column still counts pods: in a column of its own, never short.
	pods, ok := out.col[corev1.ResourcePods]
	if !ok {
		pods = len(s.Resources)
		out.Resources = append(slices.Clone(s.Resources), corev1.ResourcePods)
		for i := range out.Classes {
			c := &out.Classes[i]
			c.Free = slices.Clone(c.Free)
			for j := range c.Free {
				c.Free[j] = append(slices.Clone(c.Free[j]), 1<<62)
			}
		}
		out.col[corev1.ResourcePods] = pods
	}
	out.podsCol = pods
	return out, nil
}

// vector is a resource list in the summary's columns (cpu in millicores); missing names the resources asked for
// that no node of the member offers.
func (s *summary) vector(l corev1.ResourceList) (v []int64, missing []string) {
	v = make([]int64, len(s.Resources))
	for name, q := range l {
		i, ok := s.col[name]
		if !ok {
			if !q.IsZero() {
				missing = append(missing, string(name))
			}
			continue
		}
		if name == corev1.ResourceCPU {
			v[i] = q.MilliValue()
		} else {
			v[i] = q.Value()
		}
	}
	slices.Sort(missing)
	return v, missing
}

// free is every class's free vectors less the pods in flight: each takes its room from the vector with the most
// CPU that holds it (what a member scheduler spreading by least allocation would do), or from nothing when none
// does. Without pods in flight it is the summary's own vectors, not copied.
func (s *summary) free(flight [][]int64) [][][]int64 {
	out := make([][][]int64, len(s.Classes))
	for i, c := range s.Classes {
		out[i] = c.Free
	}
	if len(flight) == 0 {
		return out
	}
	for i := range out {
		out[i] = make([][]int64, len(s.Classes[i].Free))
		for j, f := range s.Classes[i].Free {
			out[i][j] = slices.Clone(f)
		}
	}
	cpu := s.col[corev1.ResourceCPU] // 0 when absent: any column serves to choose
	for _, req := range flight {
		var best []int64
		for _, class := range out {
			for _, f := range class {
				if fits(f, req) && (best == nil || f[cpu] > best[cpu]) {
					best = f
				}
			}
		}
		for k := range best {
			best[k] -= req[k]
		}
	}
	return out
}

// summaryCache parses each virtual node's summary once per annotation value. Filter runs for many nodes at once.
type summaryCache struct {
	mu    sync.Mutex
	nodes map[string]cachedSummary
}

type cachedSummary struct {
	raw string
	sum *summary
	err error
}

func newSummaryCache() *summaryCache { return &summaryCache{nodes: map[string]cachedSummary{}} }

func (c *summaryCache) get(node, raw string) (*summary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.nodes[node]; ok && e.raw == raw {
		return e.sum, e.err
	}
	sum, err := parseSummary(raw)
	c.nodes[node] = cachedSummary{raw: raw, sum: sum, err: err}
	return sum, err
}
