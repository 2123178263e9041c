package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux the bench runs on.
const clockTicks = 100

// cpuSeconds is the user + system CPU time of a process so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2)
// may hold spaces and parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat %q: too few fields", stat)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat %q: %w", stat, err)
		}
		ticks += v
	}
	return float64(ticks) / clockTicks, nil
}

// processCPU is the CPU seconds so far of every process whose command line names dir (the control planes kwokctl
// started from a harness folder, and tether-node), keyed <cluster>/<binary> (or <binary> outside kwok's folders).
func processCPU(dir string) map[string]float64 {
	out := map[string]float64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		cpu, err := cpuSeconds(pid)
		if err != nil {
			continue
		}
		out[processKey(strings.Split(string(cmdline), "\x00")[0])] += cpu
	}
	return out
}

// processKey names a process by its binary: .../clusters/<prefix>-<cluster>/bin/kube-apiserver → <cluster>/kube-apiserver.
func processKey(bin string) string {
	name := filepath.Base(bin)
	_, rest, ok := strings.Cut(bin, "/clusters/")
	if !ok {
		return name
	}
	cluster, _, _ := strings.Cut(rest, "/")
	if i := strings.IndexByte(cluster, '-'); i >= 0 {
		cluster = cluster[i+1:]
	}
	return cluster + "/" + name
}

// rssBytes is the resident set size of a process.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

// parseVmRSS reads the VmRSS line of /proc/<pid>/status ("VmRSS:   12345 kB").
func parseVmRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// sample is one Prometheus sample.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseMetrics reads the Prometheus text format, as far as the bench needs it: names, labels without escaped
// quotes or commas inside values, and values.
func parseMetrics(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{Labels: map[string]string{}}
		var rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("metrics line %q", line)
			}
			s.Name = line[:i]
			for kv := range strings.SplitSeq(line[i+1:j], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					continue
				}
				s.Labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
			}
			rest = line[j+1:]
		} else {
			name, r, _ := strings.Cut(line, " ")
			s.Name, rest = name, r
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s.Value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// debugClient reads tether-node's --debug-address.
type debugClient struct {
	addr string
	http *http.Client
}

func newDebugClient(addr string) *debugClient {
	return &debugClient{addr: addr, http: &http.Client{Timeout: 30 * time.Second}}
}

func (d *debugClient) metrics(ctx context.Context) ([]sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// liveHeap collects garbage in tether-node (a heap profile with gc=1 does that) and returns the heap in use
// right after: the live heap.
func (d *debugClient) liveHeap(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ms, err := d.metrics(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range ms {
		if s.Name == "go_memstats_heap_alloc_bytes" {
			return int64(s.Value), nil
		}
	}
	return 0, fmt.Errorf("no go_memstats_heap_alloc_bytes in tether-node's metrics")
}

// saveProfile writes tether-node's /debug/pprof/<name>?<query> to path.
func (d *debugClient) saveProfile(ctx context.Context, name, query, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/debug/pprof/"+name+"?"+query, nil)
	if err != nil {
		return err
	}
	client := &http.Client{} // a CPU profile takes as long as it asks for
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/%s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// requestCounts are tether-node's API requests (tether_node_api_requests_total) keyed by apiserver, verb and
// resource.
type requestCounts map[requestKey]float64

type requestKey struct{ Cluster, Verb, Resource string }

// tetherRequests picks tether_node_api_requests_total out of samples, naming apiservers by clusterOf(host:port).
func tetherRequests(ms []sample, clusterOf func(hostport string) string) requestCounts {
	out := requestCounts{}
	for _, s := range ms {
		if s.Name != "tether_node_api_requests_total" {
			continue
		}
		out[requestKey{clusterOf(s.Labels["host"]), s.Labels["verb"], s.Labels["resource"]}] += s.Value
	}
	return out
}

// sub is c minus an earlier reading.
func (c requestCounts) sub(before requestCounts) requestCounts {
	out := requestCounts{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// writes sums the write requests (POST, PUT, PATCH, DELETE) to clusters for which pick is true.
func (c requestCounts) writes(pick func(cluster string) bool) float64 {
	var n float64
	for k, v := range c {
		if pick(k.Cluster) && isWrite(k.Verb) {
			n += v
		}
	}
	return n
}

func isWrite(verb string) bool {
	switch strings.ToUpper(verb) {
	case "POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE", "DELETECOLLECTION":
		return true
	}
	return false
}

// histogram is one Prometheus histogram summed over its label sets: cumulative counts by upper bound.
type histogram map[float64]float64

// histogramOf sums the buckets of the histogram name in samples, over the label sets that have every label of
// match.
func histogramOf(ms []sample, name string, match map[string]string) histogram {
	out := histogram{}
	for _, s := range ms {
		if s.Name != name+"_bucket" {
			continue
		}
		if !labelsMatch(s.Labels, match) {
			continue
		}
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil {
			continue // +Inf parses; anything else is not a bucket
		}
		out[le] += s.Value
	}
	return out
}

// sub is h minus an earlier reading.
func (h histogram) sub(before histogram) histogram {
	out := histogram{}
	for le, v := range h {
		out[le] = v - before[le]
	}
	return out
}

// quantile interpolates linearly inside the bucket where q falls, as PromQL's histogram_quantile does; a quantile
// in the +Inf bucket is the largest finite bound. 0 for an empty histogram.
func (h histogram) quantile(q float64) time.Duration {
	bounds := make([]float64, 0, len(h))
	for le := range h {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || h[bounds[len(bounds)-1]] == 0 {
		return 0
	}
	rank := q * h[bounds[len(bounds)-1]]
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		if h[le] >= rank {
			if math.IsInf(le, 1) {
				return time.Duration(lower * float64(time.Second))
			}
			in := h[le] - below
			frac := 1.0
			if in > 0 {
				frac = (rank - below) / in
			}
			return time.Duration((lower + (le-lower)*frac) * float64(time.Second))
		}
		lower, below = le, h[le]
	}
	return time.Duration(lower * float64(time.Second))
}

func labelsMatch(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// latency is the histogram's count and p50/p90/p99.
func (h histogram) latency() *latency {
	return &latency{Count: int(h[math.Inf(1)]), P50: h.quantile(.5), P90: h.quantile(.9), P99: h.quantile(.99)}
}
