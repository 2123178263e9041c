package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/tetherkube/tether/api"
)

// Kinds of burst.
const (
	kindTether  = "tether"  // pods created on the host, run through the virtual nodes
	kindVanilla = "vanilla" // the same pods created straight in member m1
)

// podTimes are the moments one pod reached each phase, as the bench's watches saw them.
type podTimes struct {
	Sent          time.Time // just before the create request
	Bound         time.Time // nodeName set where it was created
	MemberCreated time.Time // tether: the member pod exists
	MemberRunning time.Time // tether: the member pod Running; vanilla: the pod Running
	HostRunning   time.Time // tether: the host pod Running; vanilla: = MemberRunning
	Node          string    // the node it was bound to
}

// Phase names, in order, per kind.
var phaseNames = map[string][]string{
	kindTether:  {"create→bound", "bound→member created", "member created→member Running", "member Running→host Running"},
	kindVanilla: {"create→bound", "bound→Running"},
}

// phases are the durations between consecutive phases of one pod.
func (p podTimes) phases(kind string) []time.Duration {
	if kind == kindVanilla {
		return []time.Duration{p.Bound.Sub(p.Sent), p.MemberRunning.Sub(p.Bound)}
	}
	return []time.Duration{p.Bound.Sub(p.Sent), p.MemberCreated.Sub(p.Bound), p.MemberRunning.Sub(p.MemberCreated), p.HostRunning.Sub(p.MemberRunning)}
}

func (p podTimes) done() bool { return !p.HostRunning.IsZero() }

// burstResult is one burst.
type burstResult struct {
	Kind       string        `json:"kind"`
	Index      int           `json:"index"`
	N          int           `json:"n"`
	Started    time.Time     `json:"started"`
	Running    int           `json:"running"`
	AllRunning time.Duration `json:"allRunning"` // first create sent → last pod Running
	Throughput float64       `json:"throughput"` // pods/s over the 10–90 % window
	// Bound is pods bound per second over the 10–90 % window; PerNode the pods bound to each node (W6).
	Bound   float64            `json:"boundPerSecond,omitempty"`
	PerNode map[string]int     `json:"perNode,omitempty"`
	E2E     latency            `json:"e2e"` // create sent → (host) Running
	Phases  map[string]latency `json:"phases"`
	Errors  int                `json:"createErrors"`
	// tether-node, during the burst (tether kind only).
	TetherCPUSeconds float64    `json:"tetherCPUSeconds,omitempty"`
	TetherPeakRSS    int64      `json:"tetherPeakRSS,omitempty"`
	TetherRequests   []apiCount `json:"tetherRequests,omitempty"` // per pod, from tether-node's own counters
	// TetherStatusDelay is tether-node's own part of member Running → host Running: member pod event → end of the
	// host status write (tether_node_pod_status_delay_seconds, every status of the burst).
	TetherStatusDelay *latency `json:"tetherStatusDelay,omitempty"`
	// TetherStatusPut is the latency of tether-node's host status writes (PUT pods/status) during the burst, as its
	// client measured it: the host apiserver's share of TetherStatusDelay.
	TetherStatusPut *latency `json:"tetherStatusPut,omitempty"`
	// CPU seconds of every process of the clusters and tether-node during the burst, by <cluster>/<binary>.
	CPU map[string]float64 `json:"cpuSeconds"`
	// window is what the accounting pass counts audit events in.
	window [2]time.Time
	e2e    []time.Duration
}

// statusDelayMetric is tether-node's histogram of member pod event → host status written; requestDurationMetric
// the latency of its clients' requests.
const (
	statusDelayMetric     = "tether_node_pod_status_delay_seconds"
	requestDurationMetric = "tether_node_api_request_duration_seconds"
)

// tracker records podTimes from watch events.
type tracker struct {
	mu      sync.Mutex
	pods    map[string]*podTimes
	kind    string
	n       int
	running int
	all     chan struct{}
}

func newTracker(kind string, n int) *tracker {
	return &tracker{pods: map[string]*podTimes{}, kind: kind, n: n, all: make(chan struct{})}
}

func (t *tracker) get(name string) *podTimes {
	p := t.pods[name]
	if p == nil {
		p = &podTimes{}
		t.pods[name] = p
	}
	return p
}

func (t *tracker) sent(name string) {
	t.mu.Lock()
	t.get(name).Sent = time.Now()
	t.mu.Unlock()
}

// observe records a pod event seen in cluster ("host" or a member).
func (t *tracker) observe(where string, pod *corev1.Pod, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.get(pod.Name)
	wasDone := p.done()
	running := pod.Status.Phase == corev1.PodRunning
	switch {
	case t.kind == kindVanilla:
		setOnce(&p.Bound, pod.Spec.NodeName != "", now)
		setOnce(&p.MemberRunning, running, now)
		setOnce(&p.HostRunning, running, now)
	case where == "host":
		setOnce(&p.Bound, pod.Spec.NodeName != "", now)
		if p.Node == "" {
			p.Node = pod.Spec.NodeName
		}
		setOnce(&p.HostRunning, running, now)
	default:
		if pod.Labels[api.LabelManagedBy] != api.ManagedByTether {
			return
		}
		setOnce(&p.MemberCreated, true, now)
		setOnce(&p.MemberRunning, running, now)
	}
	if !wasDone && p.done() {
		t.running++
		if t.running == t.n {
			close(t.all)
		}
	}
}

func setOnce(t *time.Time, cond bool, now time.Time) {
	if cond && t.IsZero() {
		*t = now
	}
}

// watchPods feeds every pod event of namespace ns in c to t until ctx ends.
func watchPods(ctx context.Context, c *cluster, ns string, t *tracker) error {
	list, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("%s: list pods: %w", c.name, err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	})
	if err != nil {
		return err
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if pod, ok := ev.Object.(*corev1.Pod); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
					t.observe(c.name, pod, time.Now())
				}
			}
		}
	}()
	return nil
}

// benchPod is the pod every burst creates: bare, one container, tolerating the virtual nodes' taint.
func benchPod(name string, nodeSelector map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "tether-bench"}},
		Spec: corev1.PodSpec{
			Containers:   []corev1.Container{{Name: "c", Image: "tether-bench"}},
			NodeSelector: nodeSelector,
			Tolerations: []corev1.Toleration{{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: "tether",
				Effect: corev1.TaintEffectNoSchedule}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
}

// createPods creates names in c with concurrency workers, calling sent just before each request; it returns
// the number of failed creates. selector gives the i-th pod's nodeSelector (nil: none).
// schedulerName, when set, is the pods' schedulerName.
func createPods(ctx context.Context, c *cluster, ns string, names []string, selector func(i int) map[string]string, schedulerName string, concurrency int, sent func(string)) int {
	var errs atomic.Int64
	next := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				var sel map[string]string
				if selector != nil {
					sel = selector(i)
				}
				pod := benchPod(names[i], sel)
				pod.Spec.SchedulerName = schedulerName
				if sent != nil {
					sent(names[i])
				}
				if _, err := c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					errs.Add(1)
				}
			}
		})
	}
	for i := range names {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return int(errs.Load())
}

// runBurst creates n pods (on the host for kindTether, in m1 for kindVanilla) in namespace ns and waits until
// all are Running, then deletes them and waits until they are gone everywhere.
func runBurst(ctx context.Context, e *env, o *options, kind string, index int, ns string) (*burstResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	target, watched := e.host, append([]*cluster{e.host}, e.members...)
	if kind == kindVanilla {
		target, watched = e.member("m1"), []*cluster{e.member("m1")}
	}
	t := newTracker(kind, o.N)
	for _, c := range watched {
		if err := watchPods(ctx, c, ns, t); err != nil {
			return nil, err
		}
	}
	names := make([]string, o.N)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d-%05d", kind, index, i)
	}
	res := &burstResult{Kind: kind, Index: index, N: o.N}

	// tether-node's CPU, memory and requests over the burst.
	pid := e.tetherPid()
	cpu0, _ := cpuSeconds(pid)
	procs0 := processCPU(e.st.Dir)
	self0, _ := cpuSeconds(os.Getpid())
	before, _ := e.debug.metrics(ctx)
	var peak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if r, err := rssBytes(pid); err == nil && r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	var selector func(int) map[string]string
	if kind == kindTether && !e.unpinned {
		selector = alternateMembers(e)
	}
	profiled := make(chan struct{})
	if o.Profiles && kind == kindTether && index == o.Pairs && o.profilePrefix != "" {
		// The last measured Tether burst: tether-node's CPU profile over the next 10 s.
		go func() {
			defer close(profiled)
			_ = e.debug.saveProfile(context.WithoutCancel(ctx), "profile", "seconds=10", o.profilePrefix+"cpu-w1.pb.gz")
		}()
	} else {
		close(profiled)
	}
	res.Started = time.Now()
	res.Errors = createPods(ctx, target, ns, names, selector, e.schedulerName, o.Concurrency, t.sent)
	timeout := time.NewTimer(o.RunTimeout)
	defer timeout.Stop()
	select {
	case <-t.all:
	case <-timeout.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	// Trailing writes (a last status) land within a moment; the accounting window and CPU include them.
	time.Sleep(2 * time.Second)
	res.window = [2]time.Time{res.Started, time.Now()}
	res.CPU = map[string]float64{}
	for k, v := range processCPU(e.st.Dir) {
		res.CPU[k] = math.Round((v-procs0[k])*100) / 100
	}
	if self1, err := cpuSeconds(os.Getpid()); err == nil {
		res.CPU[benchComponent] = math.Round((self1-self0)*100) / 100 // the load generator and the watches
	}
	if kind == kindTether {
		cpu1, _ := cpuSeconds(pid)
		res.TetherCPUSeconds = cpu1 - cpu0
		res.TetherPeakRSS = peak.Load()
		if after, err := e.debug.metrics(ctx); err == nil {
			for k, v := range tetherRequests(after, e.clusterOf).sub(tetherRequests(before, e.clusterOf)) {
				res.TetherRequests = append(res.TetherRequests, apiCount{Cluster: k.Cluster, Component: tetherComponent,
					Verb: k.Verb, Resource: k.Resource, Count: int(v), PerPod: v / float64(o.N)})
			}
			sortCounts(res.TetherRequests)
			if h := histogramOf(after, statusDelayMetric, nil).sub(histogramOf(before, statusDelayMetric, nil)); len(h) > 0 {
				res.TetherStatusDelay = h.latency()
			}
			put := map[string]string{"host": e.host.hostport, "verb": "PUT", "resource": "pods/status"}
			if h := histogramOf(after, requestDurationMetric, put).sub(histogramOf(before, requestDurationMetric, put)); len(h) > 0 {
				res.TetherStatusPut = h.latency()
			}
		}
	}
	cancel()
	<-sampling
	<-profiled

	t.mu.Lock()
	var first, last time.Time
	var done, bound []time.Time
	res.PerNode = map[string]int{}
	phases := make([][]time.Duration, len(phaseNames[kind]))
	for _, p := range t.pods {
		if !p.Bound.IsZero() {
			bound = append(bound, p.Bound)
			res.PerNode[p.Node]++
		}
		if first.IsZero() || (!p.Sent.IsZero() && p.Sent.Before(first)) {
			first = p.Sent
		}
		if !p.done() || p.Sent.IsZero() {
			continue
		}
		done = append(done, p.HostRunning)
		if p.HostRunning.After(last) {
			last = p.HostRunning
		}
		res.e2e = append(res.e2e, p.HostRunning.Sub(p.Sent))
		for i, d := range p.phases(kind) {
			phases[i] = append(phases[i], d)
		}
	}
	t.mu.Unlock()
	res.Running = len(done)
	res.AllRunning = last.Sub(first)
	res.Throughput = windowThroughput(done, 0.1, 0.9)
	res.Bound = windowThroughput(bound, 0.1, 0.9)
	res.E2E = summarize(res.e2e)
	res.Phases = map[string]latency{}
	for i, name := range phaseNames[kind] {
		res.Phases[name] = summarize(phases[i])
	}
	if res.Running < o.N {
		return res, fmt.Errorf("%s burst %d: only %d of %d pods Running within %s (%d creates failed)", kind, index, res.Running, o.N, o.RunTimeout, res.Errors)
	}

	return res, nil
}

// alternateMembers spreads pods evenly over the virtual nodes with a nodeSelector, the i-th pod on member i mod
// count. The host scheduler would not: kube-scheduler 1.36 breaks equal scores at random only when extenders are
// configured, and otherwise keeps the first node of its list, so equal virtual nodes get nearly every pod of a
// burst on one of them.
func alternateMembers(e *env) func(int) map[string]string {
	return func(i int) map[string]string {
		return map[string]string{api.LabelMember: e.members[i%len(e.members)].name}
	}
}

// deleteAll force-deletes the pods of ns in c and waits until they are gone from every cluster in also.
func deleteAll(ctx context.Context, c *cluster, ns string, also []*cluster) error {
	err := c.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("%s: delete pods of %s: %w", c.name, ns, err)
	}
	var left string
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, cl := range append([]*cluster{c}, also...) {
			l, err := cl.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				left = err.Error()
				return false, nil
			}
			if len(l.Items) > 0 {
				left = fmt.Sprintf("%d pods left in %s", len(l.Items), cl.name)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("delete pods of %s: %w (%s)", ns, err, left)
	}
	return nil
}
