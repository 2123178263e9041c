package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetherkube/tether/cmd/tether-node/app"
)

const usage = `Usage: go run ./test/bench [flags]   (or: make bench BENCH_ARGS="-n 1000 -workloads w1")

Brings up a host and two member clusters with the local harness, runs tether-node built from this checkout and
measures:
  w1  a burst of -n bare pods created on the host and spread over the virtual nodes, alternated with the same burst
      created straight in member m1 (the vanilla pipeline), -pairs times; then, unless -accounting=false, one more
      burst of each on clusters with an audit log, to count API requests per pod by component, verb and resource
  w2  -scale-pods pods on one virtual node: tether-node RSS and Go heap at each of -scale-steps, idle CPU at the end
  w3  with those pods running: SIGKILL tether-node, change the status of -stale-pods member pods, start it again;
      time until every host pod status is current, and tether-node's member writes meanwhile (should be 0)
  w4  -configmaps ConfigMaps used by pods on one virtual node, all changed on the host at once: time until each
      member copy carries the change, and tether-node's requests for it
  w5  fragments: members whose free CPU is split into small nodes, and single-pod workloads of which some fit only
      one member's nodes and some none; workloads Running at 60 s and 120 s against what the member nodes can hold,
      and pods evicted, without and then with tether-descheduler (the sandbox's policy), on clusters of its own
  w6  the scheduler plugin: unpinned bursts of -n pods bound by the host's default scheduler and by tether-scheduler
      (MemberFit, the sandbox's profile) in turn, -pairs times: pods bound per second, time to all Running, the
      emptier member's share, scheduler CPU and MemberFit's share of it
Results: a table on stdout and <out>/bench-<time>.json. Wrap in flock when the machine is shared.

Flags:
`

// options are the bench's flags.
type options struct {
	Workloads   []string
	ConfigMaps  int
	W1Service   bool
	N           int
	Pairs       int
	Accounting  bool
	Concurrency int
	RunTimeout  time.Duration
	ScalePods   int
	ScaleSteps  []int
	IdleWindow  time.Duration
	StalePods   int
	Out         string
	Profiles    bool
	WorkDir     string
	KeepWorkDir bool
	MemberNodes int
	NodePods    int
	Tether      tetherLimits

	profilePrefix string // where profiles go: <out>/tether-node-<time>-
	schedulerBin  string // tether-scheduler, built for W6
}

// tetherLimits are the tether-node flags that bound throughput; the bench passes every one explicitly.
type tetherLimits struct {
	HostQPS     float64 `json:"hostQPS"`
	HostBurst   int     `json:"hostBurst"`
	MemberQPS   float64 `json:"memberQPS"`
	MemberBurst int     `json:"memberBurst"`
	QueueQPS    float64 `json:"queueQPS"`
	QueueBurst  int     `json:"queueBurst"`
	PodWorkers  int     `json:"podWorkers"`
}

func (t tetherLimits) args() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return []string{
		"--host-qps", f(t.HostQPS), "--host-burst", strconv.Itoa(t.HostBurst),
		"--member-qps", f(t.MemberQPS), "--member-burst", strconv.Itoa(t.MemberBurst),
		"--queue-qps", f(t.QueueQPS), "--queue-burst", strconv.Itoa(t.QueueBurst),
		"--pod-workers", strconv.Itoa(t.PodWorkers),
	}
}

func defaultOptions() *options {
	d := app.NewOptions() // tether-node's own defaults
	return &options{
		Workloads:   []string{"w1", "w2", "w3", "w4", "w5", "w6"},
		ConfigMaps:  1000,
		N:           1000,
		Pairs:       2,
		Accounting:  true,
		Concurrency: 50,
		RunTimeout:  5 * time.Minute,
		ScalePods:   10000,
		ScaleSteps:  []int{1000, 5000, 10000},
		IdleWindow:  30 * time.Second,
		StalePods:   -1,
		Out:         "results",
		Profiles:    true,
		MemberNodes: 4,
		NodePods:    3000,
		Tether: tetherLimits{
			HostQPS: float64(d.HostQPS), HostBurst: d.HostBurst, MemberQPS: float64(d.MemberQPS), MemberBurst: d.MemberBurst,
			QueueQPS: d.QueueQPS, QueueBurst: d.QueueBurst, PodWorkers: d.PodWorkers,
		},
	}
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.ConfigMaps, "configmaps", o.ConfigMaps, "W4: ConfigMaps changed at once")
	fs.BoolVar(&o.W1Service, "w1-service", o.W1Service, "W1: a Service selects every burst pod (Tether mirrors its endpoints into the members; vanilla's member keeps its own)")
	fs.Func("workloads", "comma-separated workloads to run: w1, w2, w3, w4, w5, w6 (default all)", func(s string) error {
		o.Workloads = splitList(s)
		return nil
	})
	fs.IntVar(&o.N, "n", o.N, "W1: pods per burst")
	fs.IntVar(&o.Pairs, "pairs", o.Pairs, "W1: Tether/vanilla pairs, run alternately (A B A B …)")
	fs.BoolVar(&o.Accounting, "accounting", o.Accounting, "W1: count API requests per pod in a separate pass on audited clusters")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "concurrent creates of the load generator")
	fs.DurationVar(&o.RunTimeout, "run-timeout", o.RunTimeout, "longest wait for one burst or step to be Running")
	fs.IntVar(&o.ScalePods, "scale-pods", o.ScalePods, "W2/W3: pods on one virtual node")
	fs.Func("scale-steps", "W2: pod counts at which memory is measured (default 1000,5000,10000; -scale-pods is always last)", func(s string) error {
		var steps []int
		for _, v := range splitList(s) {
			n, err := strconv.Atoi(v)
			if err != nil {
				return err
			}
			steps = append(steps, n)
		}
		o.ScaleSteps = steps
		return nil
	})
	fs.DurationVar(&o.IdleWindow, "idle-window", o.IdleWindow, "W2: how long idle CPU is measured at -scale-pods")
	fs.IntVar(&o.StalePods, "stale-pods", o.StalePods, "W3: member pods whose status changes while tether-node is down (-1: all)")
	fs.StringVar(&o.Out, "out", o.Out, "folder of the JSON results")
	fs.BoolVar(&o.Profiles, "profiles", o.Profiles, "also save tether-node's CPU profile of the last Tether burst and its heap profile at -scale-pods under -out (go tool pprof)")
	fs.StringVar(&o.WorkDir, "workdir", o.WorkDir, "folder for the clusters and binaries (default: a new temporary folder)")
	fs.BoolVar(&o.KeepWorkDir, "keep-workdir", o.KeepWorkDir, "keep the work folder (logs of every component) at the end")
	fs.IntVar(&o.MemberNodes, "member-nodes", o.MemberNodes, "kwok nodes per member")
	fs.IntVar(&o.NodePods, "node-pods", o.NodePods, "pod capacity of each kwok node")
	fs.Float64Var(&o.Tether.HostQPS, "host-qps", o.Tether.HostQPS, "tether-node --host-qps")
	fs.IntVar(&o.Tether.HostBurst, "host-burst", o.Tether.HostBurst, "tether-node --host-burst")
	fs.Float64Var(&o.Tether.MemberQPS, "member-qps", o.Tether.MemberQPS, "tether-node --member-qps")
	fs.IntVar(&o.Tether.MemberBurst, "member-burst", o.Tether.MemberBurst, "tether-node --member-burst")
	fs.Float64Var(&o.Tether.QueueQPS, "queue-qps", o.Tether.QueueQPS, "tether-node --queue-qps")
	fs.IntVar(&o.Tether.QueueBurst, "queue-burst", o.Tether.QueueBurst, "tether-node --queue-burst")
	fs.IntVar(&o.Tether.PodWorkers, "pod-workers", o.Tether.PodWorkers, "tether-node --pod-workers")
}

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (o *options) has(w string) bool { return slices.Contains(o.Workloads, w) }

// validate reports every problem at once and puts -scale-pods last in -scale-steps.
func (o *options) validate() error {
	var errs []error
	if len(o.Workloads) == 0 {
		errs = append(errs, errors.New("-workloads: name at least one"))
	}
	for _, w := range o.Workloads {
		if !slices.Contains([]string{"w1", "w2", "w3", "w4", "w5", "w6"}, w) {
			errs = append(errs, fmt.Errorf("-workloads: unknown %q (want w1, w2, w3, w4, w5, w6)", w))
		}
	}
	for _, p := range []struct {
		name string
		ok   bool
	}{
		{"-n", o.N >= 10}, {"-pairs", o.Pairs >= 1}, {"-concurrency", o.Concurrency >= 1}, {"-run-timeout", o.RunTimeout > 0},
		{"-scale-pods", o.ScalePods >= 1}, {"-idle-window", o.IdleWindow > 0}, {"-configmaps", o.ConfigMaps >= 1}, {"-member-nodes", o.MemberNodes >= 1},
		{"-node-pods", o.NodePods >= 1}, {"-host-qps", o.Tether.HostQPS > 0}, {"-host-burst", o.Tether.HostBurst > 0},
		{"-member-qps", o.Tether.MemberQPS > 0}, {"-member-burst", o.Tether.MemberBurst > 0},
		{"-queue-qps", o.Tether.QueueQPS > 0}, {"-queue-burst", o.Tether.QueueBurst > 0}, {"-pod-workers", o.Tether.PodWorkers > 0},
	} {
		if !p.ok {
			errs = append(errs, fmt.Errorf("%s: out of range", p.name))
		}
	}
	if o.StalePods < -1 {
		errs = append(errs, errors.New("-stale-pods: -1 (all) or a count"))
	}
	if capacity := o.MemberNodes * o.NodePods; (o.has("w2") || o.has("w3")) && capacity < o.ScalePods {
		errs = append(errs, fmt.Errorf("-scale-pods %d: member m1 holds only %d pods (-member-nodes × -node-pods)", o.ScalePods, capacity))
	}
	if capacity := o.MemberNodes * o.NodePods; o.has("w1") && capacity < o.N {
		errs = append(errs, fmt.Errorf("-n %d: member m1 holds only %d pods (-member-nodes × -node-pods)", o.N, capacity))
	}
	var steps []int
	for _, s := range o.ScaleSteps {
		if s <= 0 || s > o.ScalePods {
			errs = append(errs, fmt.Errorf("-scale-steps: %d not in 1..%d", s, o.ScalePods))
		}
		if s < o.ScalePods && !slices.Contains(steps, s) {
			steps = append(steps, s)
		}
	}
	slices.Sort(steps)
	o.ScaleSteps = append(steps, o.ScalePods)
	return errors.Join(errs...)
}
