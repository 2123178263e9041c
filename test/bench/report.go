package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is everything one invocation measured; it is written as JSON.
type result struct {
	Date     time.Time         `json:"date"`
	Took     time.Duration     `json:"took"`
	Machine  machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Settings settings          `json:"settings"`
	W1       *w1Result         `json:"w1,omitempty"`
	W2       *scaleResult      `json:"w2,omitempty"`
	W3       *restartResult    `json:"w3,omitempty"`
	W4       *copiesResult     `json:"w4,omitempty"`
	W5       *fragmentsResult  `json:"w5,omitempty"`
	W6       *w6Result         `json:"w6,omitempty"`
	Targets  []target          `json:"targets"`
	Errors   []string          `json:"errors,omitempty"`
}

type machine struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	MemTotal string `json:"memTotal"`
	Kernel   string `json:"kernel"`
}

// settings are the knobs that bound throughput, as the bench set them.
type settings struct {
	Workloads   []string     `json:"workloads"`
	N           int          `json:"n"`
	Pairs       int          `json:"pairs"`
	Concurrency int          `json:"concurrency"`
	Members     string       `json:"members"`
	ScalePods   int          `json:"scalePods"`
	StalePods   int          `json:"stalePods"`
	Tether      tetherLimits `json:"tetherNode"`
	// The control planes run with kwokctl --disable-qps-limits (harness.Config.DisableQPSLimits).
	SchedulerQPS   float64 `json:"schedulerQPS"`
	SchedulerBurst int     `json:"schedulerBurst"`
	KCMQPS         float64 `json:"kcmQPS"`
	KCMBurst       int     `json:"kcmBurst"`
	APIServer      string  `json:"apiserver"`
	Kwok           string  `json:"kwokController"`
	LoadGenerator  string  `json:"loadGenerator"`
}

// w1Result is the W1 bursts and what they compare to.
type w1Result struct {
	Runs              []*burstResult `json:"runs"` // in the order they ran
	TetherThroughput  float64        `json:"tetherThroughput"`
	VanillaThroughput float64        `json:"vanillaThroughput"`
	Efficiency        float64        `json:"efficiency"`
	TetherE2E         latency        `json:"tetherE2E"` // every Tether pod of every run
	VanillaE2E        latency        `json:"vanillaE2E"`
	AddedP99          time.Duration  `json:"addedP99"`
	TetherCPUPer1000  float64        `json:"tetherCPUSecondsPer1000"`
	TetherPeakRSS     int64          `json:"tetherPeakRSS"`
	Accounting        *accounting    `json:"accounting,omitempty"`
}

// accounting is the audited pass: requests per pod by cluster, component, verb and resource.
type accounting struct {
	N             int        `json:"n"`
	Tether        []apiCount `json:"tether"`  // the Tether burst: host, m1, m2
	Vanilla       []apiCount `json:"vanilla"` // the vanilla burst: m1
	TetherHost    apiTotals  `json:"tetherHost"`
	TetherMembers apiTotals  `json:"tetherMembers"`
	VanillaTotals apiTotals  `json:"vanillaTotals"`
}

// summarizeW1 fills the comparisons from the runs.
func summarizeW1(w *w1Result) {
	var tp, vp, cpu []float64
	var te, ve []time.Duration
	for _, r := range w.Runs {
		switch r.Kind {
		case kindTether:
			tp = append(tp, r.Throughput)
			te = append(te, r.e2e...)
			cpu = append(cpu, r.TetherCPUSeconds/float64(r.N)*1000)
			w.TetherPeakRSS = max(w.TetherPeakRSS, r.TetherPeakRSS)
		case kindVanilla:
			vp = append(vp, r.Throughput)
			ve = append(ve, r.e2e...)
		}
	}
	w.TetherThroughput, w.VanillaThroughput = median(tp), median(vp)
	if w.VanillaThroughput > 0 {
		w.Efficiency = w.TetherThroughput / w.VanillaThroughput
	}
	w.TetherE2E, w.VanillaE2E = summarize(te), summarize(ve)
	w.AddedP99 = w.TetherE2E.P99 - w.VanillaE2E.P99
	w.TetherCPUPer1000 = median(cpu)
}

// target is one goal of the product, met or missed (Met is nil when the run did not measure it).
type target struct {
	Name  string `json:"name"`
	Goal  string `json:"goal"`
	Value string `json:"value"`
	Met   *bool  `json:"met"`
}

const mibPer1000Goal = 30 // MiB of RSS per 1,000 pods

func evaluate(r *result) []target {
	t := func(name, goal string, measured bool, met bool, value string) target {
		out := target{Name: name, Goal: goal, Value: "not measured"}
		if measured {
			out.Met, out.Value = &met, value
		}
		return out
	}
	var ts []target
	w1 := r.W1 != nil && r.W1.VanillaThroughput > 0 && r.W1.TetherThroughput > 0
	eff := t("efficiency", "≥ 0.45 at N=1000", w1, w1 && r.W1.Efficiency >= 0.45, "")
	p99 := t("added p99", "≤ 1 s", w1, w1 && r.W1.AddedP99 <= time.Second, "")
	if w1 {
		eff.Value = fmt.Sprintf("%.2f (N=%d)", r.W1.Efficiency, r.Settings.N)
		p99.Value = secs(r.W1.AddedP99)
	}
	ts = append(ts, eff, p99)
	acc := r.W1 != nil && r.W1.Accounting != nil
	var a accounting
	if acc {
		a = *r.W1.Accounting
	}
	ts = append(ts,
		t("member creates per offloaded pod", "≤ 1", acc, a.TetherMembers.MemberPodCreates <= 1, fmt.Sprintf("%.2f", a.TetherMembers.MemberPodCreates)),
		t("host status writes per offloaded pod", "≤ 2", acc, a.TetherHost.HostStatusWrites <= 2, fmt.Sprintf("%.2f", a.TetherHost.HostStatusWrites)),
		t("LISTs by tether-node during the burst", "0", acc, a.TetherHost.TetherLists+a.TetherMembers.TetherLists == 0,
			fmt.Sprintf("%d", a.TetherHost.TetherLists+a.TetherMembers.TetherLists)))
	w2 := r.W2 != nil && len(r.W2.Steps) > 1
	var w2v float64
	if w2 {
		w2v = r.W2.RSSPer1000 / (1 << 20)
	}
	ts = append(ts, t("RSS per 1,000 pods", fmt.Sprintf("≤ %d MiB", mibPer1000Goal), w2, w2v <= mibPer1000Goal, fmt.Sprintf("%.1f MiB", w2v)))
	w3 := r.W3 != nil && r.W3.Converged > 0
	var w3c time.Duration
	var w3w float64
	if w3 {
		w3c, w3w = r.W3.Converged, r.W3.MemberWrites
	}
	ts = append(ts,
		t("restart converged", "≤ 30 s", w3, w3c <= 30*time.Second, secs(w3c)),
		t("member writes during the restart", "0", w3, w3w == 0, fmt.Sprintf("%.0f", w3w)))
	w6 := r.W6 != nil && r.W6.BoundRatio > 0
	var w6r w6Result
	if w6 {
		w6r = *r.W6
	}
	ts = append(ts,
		t("tether-scheduler bound/s vs default", "≥ 0.90", w6, w6r.BoundRatio >= 0.9, fmt.Sprintf("%.2f", w6r.BoundRatio)),
		t("tether-scheduler all Running vs default", "≤ 1.00", w6, w6r.AllRunning[kindTetherScheduler] <= w6r.AllRunning[kindDefaultScheduler],
			fmt.Sprintf("%s vs %s", secs(w6r.AllRunning[kindTetherScheduler]), secs(w6r.AllRunning[kindDefaultScheduler]))),
		t("tether-scheduler emptier member's share", "≥ 40 %", w6, w6r.Share[kindTetherScheduler] >= 0.4, fmt.Sprintf("%.0f %%", w6r.Share[kindTetherScheduler]*100)))
	return ts
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func readMachine() machine {
	m := machine{CPUs: runtime.NumCPU()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// printHeader prints the machine, versions and every rate limit that matters.
func printHeader(w io.Writer, r *result) {
	s := r.Settings
	fmt.Fprintf(w, "Tether bench  %s\n", r.Date.Format(time.RFC3339))
	fmt.Fprintf(w, "machine      %s, %d CPUs (%s), %s, Linux %s\n", r.Machine.Hostname, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel)
	var vs []string
	for k, v := range r.Versions {
		vs = append(vs, k+" "+v)
	}
	slices.Sort(vs)
	fmt.Fprintf(w, "versions     %s\n", strings.Join(vs, ", "))
	fmt.Fprintf(w, "clusters     host + %s\n", s.Members)
	fmt.Fprintf(w, "limits       kube-scheduler client %.0f QPS / %d burst; kube-controller-manager client %.0f QPS / %d burst (every cluster)\n",
		s.SchedulerQPS, s.SchedulerBurst, s.KCMQPS, s.KCMBurst)
	fmt.Fprintf(w, "             kube-apiserver %s; kwok-controller %s\n", s.APIServer, s.Kwok)
	t := s.Tether
	fmt.Fprintf(w, "             tether-node host %g QPS / %d burst, member %g QPS / %d burst, queues %g/s / %d burst, %d pod workers per node\n",
		t.HostQPS, t.HostBurst, t.MemberQPS, t.MemberBurst, t.QueueQPS, t.QueueBurst, t.PodWorkers)
	fmt.Fprintf(w, "             load generator %s\n", s.LoadGenerator)
	fmt.Fprintf(w, "workloads    %s; N=%d, %d pairs; scale %d pods\n\n", strings.Join(s.Workloads, ","), s.N, s.Pairs, s.ScalePods)
}

// printResults prints the tables.
func printResults(w io.Writer, r *result) {
	if r.W1 != nil && len(r.W1.Runs) > 0 {
		printW1(w, r.W1)
	}
	if r.W2 != nil && len(r.W2.Steps) > 0 {
		printW2(w, r.W2)
	}
	if r.W3 != nil {
		printW3(w, r.W3)
	}
	if r.W4 != nil {
		printCopies(w, r.W4)
	}
	if r.W5 != nil {
		printFragments(w, r.W5)
	}
	if r.W6 != nil && len(r.W6.Runs) > 0 {
		printW6(w, r.W6)
	}
	fmt.Fprintln(w, "Targets")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  target\tgoal\tvalue\t")
	for _, t := range r.Targets {
		verdict := "—"
		if t.Met != nil {
			verdict = map[bool]string{true: "met", false: "MISSED"}[*t.Met]
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Name, t.Goal, t.Value, verdict)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

func printW1(w io.Writer, w1 *w1Result) {
	fmt.Fprintln(w, "W1 burst (times from the bench's watches; throughput over the 10–90 % window)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tpods\tall Running\tpods/s\tp50\tp90\tp99\tmax\ttether CPU s\ttether peak RSS\t")
	for _, r := range w1.Runs {
		cpu, rss := "", ""
		if r.Kind == kindTether {
			cpu, rss = fmt.Sprintf("%.1f", r.TetherCPUSeconds), mib(r.TetherPeakRSS)
		}
		fmt.Fprintf(tw, "%s #%d\t%d\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Kind, r.Index, r.Running, secs(r.AllRunning), r.Throughput,
			secs(r.E2E.P50), secs(r.E2E.P90), secs(r.E2E.P99), secs(r.E2E.Max), cpu, rss)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nphases (p50 / p99, every run pooled per kind: from the last run of each kind)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	seen := map[string]bool{}
	for i := len(w1.Runs) - 1; i >= 0; i-- {
		r := w1.Runs[i]
		if seen[r.Kind] {
			continue
		}
		seen[r.Kind] = true
		for _, name := range phaseNames[r.Kind] {
			l := r.Phases[name]
			fmt.Fprintf(tw, "  %s #%d\t%s\t%s / %s\t\n", r.Kind, r.Index, name, secs(l.P50), secs(l.P99))
		}
		if l := r.TetherStatusDelay; l != nil {
			fmt.Fprintf(tw, "  %s #%d\t  of which tether-node (event → status written, %d writes)\t%s / %s\t\n", r.Kind, r.Index, l.Count, secs(l.P50), secs(l.P99))
		}
		if l := r.TetherStatusPut; l != nil {
			fmt.Fprintf(tw, "  %s #%d\t    of which the host's answer to PUT pods/status (%d)\t%s / %s\t\n", r.Kind, r.Index, l.Count, secs(l.P50), secs(l.P99))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nCPU seconds during the burst (last run of each kind; 2 cores = 2 CPU s per second)")
	for _, r := range lastOfEachKind(w1.Runs) {
		fmt.Fprintf(w, "  %s #%d: %s\n", r.Kind, r.Index, cpuLine(r.CPU))
	}
	fmt.Fprintf(w, "\nefficiency   %.2f  (Tether %.1f pods/s / vanilla %.1f pods/s, medians)\n", w1.Efficiency, w1.TetherThroughput, w1.VanillaThroughput)
	fmt.Fprintf(w, "added p99    %s  (Tether p99 %s − vanilla p99 %s, every pod of every run)\n", secs(w1.AddedP99), secs(w1.TetherE2E.P99), secs(w1.VanillaE2E.P99))
	fmt.Fprintf(w, "tether-node  %.2f CPU s per 1,000 pods; peak RSS %s\n\n", w1.TetherCPUPer1000, mib(w1.TetherPeakRSS))
	if a := w1.Accounting; a != nil {
		printAccounting(w, a)
	}
}

func lastOfEachKind(runs []*burstResult) []*burstResult {
	var out []*burstResult
	seen := map[string]bool{}
	for i := len(runs) - 1; i >= 0; i-- {
		if !seen[runs[i].Kind] {
			seen[runs[i].Kind] = true
			out = append([]*burstResult{runs[i]}, out...)
		}
	}
	return out
}

// cpuLine lists CPU seconds by process, largest first, with the total.
func cpuLine(cpu map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var all []kv
	var total float64
	for k, v := range cpu {
		all = append(all, kv{k, v})
		total += v
	}
	slices.SortFunc(all, func(a, b kv) int {
		if a.v != b.v {
			return cmp.Compare(b.v, a.v)
		}
		return strings.Compare(a.k, b.k)
	})
	parts := []string{fmt.Sprintf("total %.1f", total)}
	for _, p := range all {
		if p.v >= 0.1 {
			parts = append(parts, fmt.Sprintf("%s %.1f", p.k, p.v))
		}
	}
	return strings.Join(parts, ", ")
}

func printAccounting(w io.Writer, a *accounting) {
	fmt.Fprintf(w, "API requests per pod (audited pass, N=%d; watches counted when opened; lines ≥ 0.01 per pod)\n", a.N)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  burst\tcluster\tcomponent\tverb\tresource\tper pod\t")
	for _, part := range []struct {
		name  string
		lines []apiCount
	}{{kindTether, a.Tether}, {kindVanilla, a.Vanilla}} {
		for _, l := range part.lines {
			if l.PerPod < 0.01 {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%.2f\t\n", part.name, l.Cluster, l.Component, l.Verb, l.Resource, l.PerPod)
		}
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\n  per pod\ttether-node writes\ttether-node reads\tother writes\tother reads\tload generator writes\t")
	for _, row := range []struct {
		name string
		t    apiTotals
	}{{"tether: host", a.TetherHost}, {"tether: members", a.TetherMembers}, {"vanilla: m1", a.VanillaTotals}} {
		fmt.Fprintf(tw, "  %s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", row.name, row.t.TetherWrites, row.t.TetherReads, row.t.RestWrites, row.t.RestReads, row.t.LoadWrites)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func printW2(w io.Writer, s *scaleResult) {
	fmt.Fprintln(w, "W2 scale (one virtual node; tether-node freshly started)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pods\tRSS\tlive heap\treached in\t")
	for _, st := range s.Steps {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t\n", st.Pods, mib(st.RSS), mib(st.LiveHeap), secs(st.ReachedIn))
	}
	tw.Flush()
	fmt.Fprintf(w, "per 1,000 pods  RSS %s, live heap %s; idle CPU at %d pods: %.3f cores (%.2f CPU s over %s)\n\n",
		mib(int64(s.RSSPer1000)), mib(int64(s.HeapPer1000)), s.Steps[len(s.Steps)-1].Pods, s.IdleCores, s.IdleCPUSeconds, s.IdleWindow)
}

func printW3(w io.Writer, r *restartResult) {
	fmt.Fprintln(w, "W3 restart (SIGKILL with every scale pod Running; member statuses change while it is down)")
	fmt.Fprintf(w, "pods %d, member statuses changed %d, host pods stale at restart %d, down %s (virtual node still Ready: %v)\n",
		r.Pods, r.StalePods, r.StaleAtStart, secs(r.Down), r.NodeWasReady)
	fmt.Fprintf(w, "started → node lease renewed and Ready %s; → every host pod status current %s\n", secs(r.NodeReady), secs(r.Converged))
	fmt.Fprintf(w, "tether-node meanwhile: member writes %.0f, host pod writes %.0f, LISTs %.0f\n\n", r.MemberWrites, r.HostPodWrites, r.TetherLists)
}

// writeJSON writes r to <dir>/bench-<date>.json and returns the path.
func writeJSON(dir string, r *result) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "bench-"+r.Date.UTC().Format("20060102-150405")+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

func sortCounts(cs []apiCount) {
	slices.SortFunc(cs, func(a, b apiCount) int {
		return strings.Compare(a.Cluster+"\x00"+a.Verb+"\x00"+a.Resource, b.Cluster+"\x00"+b.Verb+"\x00"+b.Resource)
	})
}
