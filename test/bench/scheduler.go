package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
)

// W6, the scheduler plugin: unpinned bursts of -n pods on the host, bound by the host's default scheduler and by
// tether-scheduler (MemberFit, the sandbox's profile) in turn, -pairs times, on the timed pass's clusters.

// Burst kinds of W6 (burstResult.Kind).
const (
	kindDefaultScheduler = "default-scheduler"
	kindTetherScheduler  = api.SchedulerName
)

// w6Result is W6: per run, and medians per scheduler.
type w6Result struct {
	Runs []*burstResult `json:"runs"`
	// Bound is the median pods bound per second (10–90 % window) per scheduler; BoundRatio tether / default.
	Bound      map[string]float64 `json:"boundPerSecond"`
	BoundRatio float64            `json:"boundRatio"`
	// AllRunning is the median time from the first create to the last pod Running, per scheduler.
	AllRunning map[string]time.Duration `json:"allRunning"`
	// Share is the median share of the pods on the member that got fewer, per scheduler (0.5 is even).
	Share map[string]float64 `json:"share"`
	// SchedulerCPU is the median CPU seconds per 1,000 pods of the scheduler that bound them.
	SchedulerCPU map[string]float64 `json:"schedulerCPUPer1000"`
	// PluginShare is MemberFit's time (kube-scheduler's sampled plugin metric, scaled to every pod) over
	// tether-scheduler's CPU time, over all tether-scheduler bursts.
	PluginShare float64 `json:"pluginShare"`
	// Algorithm is each scheduler's mean scheduling-algorithm time per pod (its own metric).
	Algorithm map[string]time.Duration `json:"algorithmPerPod"`
}

// pluginSamplePercent is the share of scheduling cycles in which kube-scheduler records plugin execution times.
const pluginSamplePercent = 10

// runW6 starts tether-scheduler beside the clusters and alternates the two kinds of burst.
func runW6(ctx context.Context, e *env, o *options, schedBin string, log io.Writer) (_ *w6Result, err error) {
	if err := w1Namespaces(ctx, e, o); err != nil {
		return nil, err
	}
	// The host runs without client limits (DisableQPSLimits): tether-scheduler too.
	config, err := e.st.WriteFile(sandbox.SchedulerConfigFile, sandbox.SchedulerConfig(e.st.Host().Kubeconfig, 5000, 10000))
	if err != nil {
		return nil, err
	}
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, err
	}
	args := e.st.SchedulerArgs(schedBin, config, port, "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics")
	if _, err := e.st.StartProcess(sandbox.TetherScheduler, args...); err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.st.StopProcess(sandbox.TetherScheduler, syscall.SIGTERM)) }()
	if err := sandbox.WaitScheduler(ctx, port, time.Minute); err != nil {
		return nil, err
	}
	e.unpinned = true
	defer func() { e.unpinned, e.schedulerName = false, "" }()
	kinds := []string{kindDefaultScheduler, kindTetherScheduler}
	burst := func(o *options, kind string, i int) (*burstResult, error) {
		e.schedulerName = ""
		if kind == kindTetherScheduler {
			e.schedulerName = api.SchedulerName
		}
		r, err := burstAndClean(ctx, e, o, kindTether, i)
		if r != nil {
			r.Kind = kind
		}
		return r, err
	}
	warm := *o
	warm.N = max(10, o.N/10)
	for _, kind := range kinds {
		if _, err := burst(&warm, kind, 0); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	w := &w6Result{}
	before := schedulerMetrics(ctx, e, port)
	for i := 1; i <= o.Pairs; i++ {
		for _, kind := range kinds {
			r, err := burst(o, kind, i)
			if r != nil {
				w.Runs = append(w.Runs, r)
				fmt.Fprintf(log, "w6: %s #%d: %.1f bound/s, all Running in %s, %v\n", kind, i, r.Bound, secs(r.AllRunning), r.PerNode)
			}
			if err != nil {
				summarizeW6(w, o.N)
				return w, err
			}
		}
	}
	summarizeW6(w, o.N)
	after := schedulerMetrics(ctx, e, port)
	if cpu := sumCPU(w.Runs, kindTetherScheduler, sandbox.TetherScheduler); cpu > 0 {
		plugin := after.plugin - before.plugin
		w.PluginShare = plugin * 100 / pluginSamplePercent / cpu
	}
	w.Algorithm = map[string]time.Duration{}
	for kind, m := range map[string][2]metricPair{kindTetherScheduler: {before.tether, after.tether}, kindDefaultScheduler: {before.host, after.host}} {
		if n := m[1].count - m[0].count; n > 0 {
			w.Algorithm[kind] = time.Duration((m[1].sum - m[0].sum) / n * float64(time.Second))
		}
	}
	return w, nil
}

// schedulerCPUKey names the scheduler process of a kind in burstResult.CPU.
func schedulerCPUKey(kind string) string {
	if kind == kindTetherScheduler {
		return sandbox.TetherScheduler
	}
	return sandbox.HostName + "/kube-scheduler"
}

func sumCPU(runs []*burstResult, kind, key string) float64 {
	var s float64
	for _, r := range runs {
		if r.Kind == kind {
			s += r.CPU[key]
		}
	}
	return s
}

func summarizeW6(w *w6Result, n int) {
	w.Bound, w.AllRunning, w.Share, w.SchedulerCPU = map[string]float64{}, map[string]time.Duration{}, map[string]float64{}, map[string]float64{}
	for _, kind := range []string{kindDefaultScheduler, kindTetherScheduler} {
		var bound, running, share, cpu []float64
		for _, r := range w.Runs {
			if r.Kind != kind {
				continue
			}
			bound = append(bound, r.Bound)
			running = append(running, r.AllRunning.Seconds())
			counts := slices.Collect(func(yield func(int) bool) {
				for _, m := range []string{"m1", "m2"} {
					if !yield(r.PerNode[api.NodeName(api.DefaultNodePrefix, m)]) {
						return
					}
				}
			})
			share = append(share, float64(slices.Min(counts))/float64(max(n, 1)))
			cpu = append(cpu, r.CPU[schedulerCPUKey(kind)]*1000/float64(max(n, 1)))
		}
		w.Bound[kind] = median(bound)
		w.AllRunning[kind] = time.Duration(median(running) * float64(time.Second))
		w.Share[kind] = median(share)
		w.SchedulerCPU[kind] = median(cpu)
	}
	if d := w.Bound[kindDefaultScheduler]; d > 0 {
		w.BoundRatio = w.Bound[kindTetherScheduler] / d
	}
}

// metricPair is a histogram's sum and count.
type metricPair struct{ sum, count float64 }

// schedMetrics are what W6 reads from the schedulers' /metrics.
type schedMetrics struct {
	plugin       float64    // MemberFit's sampled execution seconds, every extension point
	tether, host metricPair // scheduler_scheduling_algorithm_duration_seconds
}

// schedulerMetrics reads tether-scheduler's metrics on port, and the host scheduler's on the port kwokctl gave it
// (from its command line; nothing when it refuses an anonymous read).
func schedulerMetrics(ctx context.Context, e *env, port int) schedMetrics {
	var m schedMetrics
	read := func(port int, f func(name, labels string, v float64)) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} //nolint:gosec // local metrics
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:"+strconv.Itoa(port)+"/metrics", nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			name, rest, _ := strings.Cut(line, "{")
			labels, value, ok := strings.Cut(rest, "} ")
			if !ok {
				name, value, _ = strings.Cut(line, " ")
				labels = ""
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err == nil {
				f(name, labels, v)
			}
		}
	}
	algo := func(p *metricPair) func(name, labels string, v float64) {
		return func(name, labels string, v float64) {
			switch name {
			case "scheduler_scheduling_algorithm_duration_seconds_sum":
				p.sum += v
			case "scheduler_scheduling_algorithm_duration_seconds_count":
				p.count += v
			}
		}
	}
	read(port, func(name, labels string, v float64) {
		if name == "scheduler_plugin_execution_duration_seconds_sum" && strings.Contains(labels, `plugin="`+api.SchedulerPlugin+`"`) {
			m.plugin += v
		}
		algo(&m.tether)(name, labels, v)
	})
	if hp := hostSchedulerPort(e); hp > 0 {
		read(hp, algo(&m.host))
	}
	return m
}

// hostSchedulerPort is the secure port of the host's kube-scheduler, from its command line (0: not found).
func hostSchedulerPort(e *env) int {
	out, err := exec.Command("pgrep", "-a", "kube-scheduler").Output()
	if err != nil {
		return 0
	}
	host := filepath.Join("clusters", e.st.Host().KwokName)
	for line := range strings.Lines(string(out)) {
		if !strings.Contains(line, host) {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "--secure-port="); ok {
				p, _ := strconv.Atoi(v)
				return p
			}
		}
	}
	return 0
}

// printW6 prints W6.
func printW6(w io.Writer, r *w6Result) {
	fmt.Fprintln(w, "W6  unpinned bursts: the host's default scheduler against tether-scheduler (MemberFit)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  scheduler\tbound/s\tall Running\temptier member's share\tscheduler CPU s/1000 pods\talgorithm/pod\t")
	for _, kind := range []string{kindDefaultScheduler, kindTetherScheduler} {
		fmt.Fprintf(tw, "  %s\t%.1f\t%s\t%.0f %%\t%.2f\t%s\t\n", kind, r.Bound[kind], secs(r.AllRunning[kind]), r.Share[kind]*100,
			r.SchedulerCPU[kind], r.Algorithm[kind].Round(time.Microsecond))
	}
	tw.Flush()
	fmt.Fprintf(w, "  bound/s ratio tether-scheduler/default: %.2f; MemberFit's share of tether-scheduler's CPU: %.2f %%\n\n", r.BoundRatio, r.PluginShare*100)
}
