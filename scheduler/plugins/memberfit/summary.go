package memberfit

import (
	"cmp"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tetherkube/tether/api"
)

// summary is a parsed api.NodeSummary with its column index.
type summary struct {
	api.NodeSummary
	col     map[corev1.ResourceName]int
	podsCol int
	// byCPU is every free vector (class, index) by decreasing CPU: where pods in flight take their room.
	byCPU [][2]int
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
	cpu := out.col[corev1.ResourceCPU] // 0 when absent: any column serves to choose
	for i, c := range out.Classes {
		for j := range c.Free {
			out.byCPU = append(out.byCPU, [2]int{i, j})
		}
	}
	slices.SortStableFunc(out.byCPU, func(a, b [2]int) int {
		return cmp.Compare(out.Classes[b[0]].Free[b[1]][cpu], out.Classes[a[0]].Free[a[1]][cpu])
	})
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

// resourceVector is a pod's requests as the scheduler caches them, plus the pod itself, in the summary's columns;
// resources the member does not offer are left out (such a pod fits no vector and takes nothing).
func (s *summary) resourceVector(r fwk.Resource) []int64 {
	v := make([]int64, len(s.Resources))
	for i, name := range s.Resources {
		switch name {
		case corev1.ResourceCPU:
			v[i] = r.GetMilliCPU()
		case corev1.ResourceMemory:
			v[i] = r.GetMemory()
		case corev1.ResourceEphemeralStorage:
			v[i] = r.GetEphemeralStorage()
		case corev1.ResourcePods:
			v[i] = 1
		default:
			v[i] = r.GetScalarResources()[name]
		}
	}
	return v
}

// free is every class's free vectors less the pods in flight: each takes its room from the vector with the most CPU
// (as the summary shows it) that holds it — what a member scheduler spreading by least allocation would do — or
// from nothing when none does. Only the vectors that lose room are copied; without pods in flight it is the
// summary's own vectors.
func (s *summary) free(flight [][]int64) [][][]int64 {
	out := make([][][]int64, len(s.Classes))
	for i, c := range s.Classes {
		out[i] = c.Free
	}
	if len(flight) == 0 {
		return out
	}
	copied := make(map[[2]int]bool)
	for _, req := range flight {
		for _, at := range s.byCPU {
			f := out[at[0]][at[1]]
			if !fits(f, req) {
				continue
			}
			if !copied[at] {
				if !copied[[2]int{at[0], -1}] { // the class's slice of vectors, once
					out[at[0]] = slices.Clone(out[at[0]])
					copied[[2]int{at[0], -1}] = true
				}
				f = slices.Clone(f)
				out[at[0]][at[1]] = f
				copied[at] = true
			}
			for k := range f {
				f[k] -= req[k]
			}
			break
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
