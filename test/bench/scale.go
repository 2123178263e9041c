package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/forge"
)

// scaleNamespace holds the W2/W3 pods, all on the virtual node of m1.
const scaleNamespace = "bench-scale"

func scaleSelector(int) map[string]string { return map[string]string{api.LabelMember: "m1"} }

// scaleStep is tether-node's memory with some pods Running on its virtual node.
type scaleStep struct {
	Pods      int           `json:"pods"`
	RSS       int64         `json:"rss"`
	LiveHeap  int64         `json:"liveHeap"` // heap in use right after a forced GC
	ReachedIn time.Duration `json:"reachedIn"`
}

type scaleResult struct {
	Steps          []scaleStep   `json:"steps"`
	RSSPer1000     float64       `json:"rssPer1000"` // bytes: (RSS at the last step − RSS at 0) per 1,000 pods
	HeapPer1000    float64       `json:"heapPer1000"`
	IdleWindow     time.Duration `json:"idleWindow"`
	IdleCPUSeconds float64       `json:"idleCPUSeconds"`
	IdleCores      float64       `json:"idleCores"` // CPU seconds per second while idle with every pod Running
	CreateErrors   int           `json:"createErrors"`
}

// runScale puts o.ScalePods pods on tether-m1 in steps, measuring a freshly started tether-node at 0 and after
// each step, then its idle CPU.
func runScale(ctx context.Context, e *env, o *options) (*scaleResult, error) {
	// A fresh process: memory freed after W1 is not always returned to the system.
	if err := e.stopTether(syscall.SIGTERM); err != nil {
		return nil, err
	}
	if err := e.startTether(); err != nil {
		return nil, err
	}
	if err := e.waitTether(ctx); err != nil {
		return nil, err
	}
	res := &scaleResult{IdleWindow: o.IdleWindow}
	time.Sleep(5 * time.Second)
	step, err := measureMemory(ctx, e, 0)
	if err != nil {
		return nil, err
	}
	res.Steps = append(res.Steps, step)
	errs, err := growScale(ctx, e, o, func(n int, took time.Duration) error {
		time.Sleep(5 * time.Second) // status writes settle
		s, err := measureMemory(ctx, e, n)
		s.ReachedIn = took
		res.Steps = append(res.Steps, s)
		fmt.Fprintf(e.log, "w2: %d pods Running (in %s): RSS %s, live heap %s\n", n, took.Round(time.Second), mib(s.RSS), mib(s.LiveHeap))
		return err
	})
	res.CreateErrors = errs
	if err != nil {
		return res, err
	}
	if o.Profiles && o.profilePrefix != "" {
		if err := e.debug.saveProfile(ctx, "heap", "gc=1", o.profilePrefix+"heap-w2.pb.gz"); err != nil {
			return res, fmt.Errorf("w2: heap profile: %w", err)
		}
	}
	first, last := res.Steps[0], res.Steps[len(res.Steps)-1]
	res.RSSPer1000 = float64(last.RSS-first.RSS) / (float64(last.Pods) / 1000)
	res.HeapPer1000 = float64(last.LiveHeap-first.LiveHeap) / (float64(last.Pods) / 1000)

	time.Sleep(10 * time.Second)
	pid := e.tetherPid()
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return res, err
	}
	var profiled chan error
	if o.Profiles && o.profilePrefix != "" {
		// A CPU profile of the idle window itself: what an idle tether-node spends its CPU on.
		profiled = make(chan error, 1)
		go func() {
			profiled <- e.debug.saveProfile(ctx, "profile", fmt.Sprintf("seconds=%d", int(o.IdleWindow.Seconds())), o.profilePrefix+"cpu-idle-w2.pb.gz")
		}()
	}
	time.Sleep(o.IdleWindow)
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return res, err
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			return res, fmt.Errorf("w2: idle CPU profile: %w", err)
		}
	}
	res.IdleCPUSeconds = cpu1 - cpu0
	res.IdleCores = res.IdleCPUSeconds / o.IdleWindow.Seconds()
	return res, nil
}

func measureMemory(ctx context.Context, e *env, pods int) (scaleStep, error) {
	s := scaleStep{Pods: pods}
	rss, err := rssBytes(e.tetherPid())
	if err != nil {
		return s, err
	}
	s.RSS = rss
	s.LiveHeap, err = e.debug.liveHeap(ctx)
	return s, err
}

// growScale creates the scale pods step by step (o.ScaleSteps), calling at after each step once all of them are
// Running in the host. Pods that already exist count.
func growScale(ctx context.Context, e *env, o *options, at func(n int, took time.Duration) error) (int, error) {
	for _, c := range append([]*cluster{e.host}, e.members...) {
		if err := ensureNamespace(ctx, c, scaleNamespace); err != nil {
			return 0, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := newTracker(kindTether, o.ScalePods)
	if err := watchPods(ctx, e.host, scaleNamespace, t); err != nil {
		return 0, err
	}
	existing, err := e.host.client.CoreV1().Pods(scaleNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	for i := range existing.Items {
		t.observe("host", &existing.Items[i], time.Now())
	}
	have := len(existing.Items)
	errs := 0
	for _, step := range o.ScaleSteps {
		if step <= have {
			continue
		}
		var names []string
		for i := have; i < step; i++ {
			names = append(names, fmt.Sprintf("scale-%05d", i))
		}
		start := time.Now()
		errs += createPods(ctx, e.host, scaleNamespace, names, scaleSelector, "", o.Concurrency, nil)
		timeout := o.RunTimeout * time.Duration(1+(step-have)/1000)
		var running int
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
			t.mu.Lock()
			running = t.running
			t.mu.Unlock()
			return running >= step, nil
		})
		if err != nil {
			return errs, fmt.Errorf("w2: %d of %d pods Running after %s: %w", running, step, timeout, err)
		}
		have = step
		if at != nil {
			if err := at(step, time.Since(start)); err != nil {
				return errs, err
			}
		}
	}
	return errs, nil
}

// restartResult is W3.
type restartResult struct {
	Pods           int           `json:"pods"`
	StalePods      int           `json:"stalePods"`     // member pods whose status changed while tether-node was down
	StaleAtStart   int           `json:"staleAtStart"`  // host pods not current when tether-node started again
	Down           time.Duration `json:"down"`          // SIGKILL → started again
	NodeReady      time.Duration `json:"nodeReady"`     // started → virtual node Ready
	Converged      time.Duration `json:"converged"`     // started → every host pod status current
	NodeWasReady   bool          `json:"nodeWasReady"`  // the virtual node was still Ready at the restart
	MemberWrites   float64       `json:"memberWrites"`  // tether-node's writes to members, started → converged
	HostPodWrites  float64       `json:"hostPodWrites"` // tether-node's writes of host pods and their status
	TetherLists    float64       `json:"tetherLists"`
	TetherRequests []apiCount    `json:"tetherRequests"`
}

// runRestart kills tether-node under o.ScalePods pods, changes member statuses meanwhile, starts it again and
// measures how long the host takes to be current.
func runRestart(ctx context.Context, e *env, o *options) (*restartResult, error) {
	if _, err := growScale(ctx, e, o, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m1 := e.member("m1")
	hostInf := informers.NewSharedInformerFactoryWithOptions(e.host.client, 0, informers.WithNamespace(scaleNamespace))
	memberInf := informers.NewSharedInformerFactoryWithOptions(m1.client, 0, informers.WithNamespace(scaleNamespace))
	hostPods, memberPods := hostInf.Core().V1().Pods(), memberInf.Core().V1().Pods()
	hostPods.Informer()
	memberPods.Informer()
	hostInf.Start(ctx.Done())
	memberInf.Start(ctx.Done())
	defer func() { cancel(); hostInf.Shutdown(); memberInf.Shutdown() }() // Shutdown waits for ctx to end
	// Which host pods are not current, kept up to date from both caches' events: a full comparison of every pod
	// on every poll would cost the CPU tether-node needs.
	cur := &currency{host: hostPods.Lister(), member: memberPods.Lister(), stale: map[string]bool{}}
	for _, inf := range []cache.SharedIndexInformer{hostPods.Informer(), memberPods.Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { cur.check(obj) },
			UpdateFunc: func(_, obj any) { cur.check(obj) },
			DeleteFunc: func(obj any) { cur.check(obj) },
		}); err != nil {
			return nil, err
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), hostPods.Informer().HasSynced, memberPods.Informer().HasSynced) {
		return nil, ctx.Err()
	}
	stale := cur.count
	var n, total int
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		n, total = stale()
		return n == 0 && total >= o.ScalePods, nil
	}); err != nil {
		return nil, fmt.Errorf("w3: before the restart %d of %d host pods are not current (want 0 of %d): %w", n, total, o.ScalePods, err)
	}

	res := &restartResult{Pods: o.ScalePods}
	killed := time.Now()
	if err := e.stopTether(syscall.SIGKILL); err != nil {
		return nil, err
	}
	// While tether-node is down, member pods change: a container restarts.
	pods, _ := memberPods.Lister().List(labels.Everything())
	if o.StalePods >= 0 && o.StalePods < len(pods) {
		pods = pods[:o.StalePods]
	}
	res.StalePods = len(pods) - restartContainers(ctx, m1, pods, o.Concurrency)
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		n, _ := stale()
		return n >= res.StalePods, nil
	}); err != nil {
		return nil, fmt.Errorf("w3: the member changes did not reach the bench's cache: %w", err)
	}
	res.StaleAtStart, _ = stale()
	node, err := e.host.client.CoreV1().Nodes().Get(ctx, "tether-m1", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	res.NodeWasReady = nodeReady(node)

	started := time.Now()
	res.Down = started.Sub(killed)
	if err := e.startTether(); err != nil {
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		if res.NodeReady == 0 && nodeBack(ctx, e, started) {
			res.NodeReady = time.Since(started)
		}
		n, total := stale()
		return n == 0 && total >= o.ScalePods, nil
	})
	res.Converged = time.Since(started)
	if err != nil {
		n, _ := stale()
		return res, fmt.Errorf("w3: %d host pods still not current %s after the restart: %w", n, res.Converged.Round(time.Second), err)
	}
	if ms, err := e.debug.metrics(ctx); err == nil {
		counts := tetherRequests(ms, e.clusterOf)
		for k, v := range counts {
			res.TetherRequests = append(res.TetherRequests, apiCount{Cluster: k.Cluster, Component: tetherComponent,
				Verb: k.Verb, Resource: k.Resource, Count: int(v), PerPod: v / float64(o.ScalePods)})
			switch {
			case k.Verb == "LIST":
				res.TetherLists += v
			case k.Cluster != "host" && isWrite(k.Verb):
				res.MemberWrites += v
			case k.Cluster == "host" && isWrite(k.Verb) && (k.Resource == "pods" || k.Resource == "pods/status"):
				res.HostPodWrites += v
			}
		}
		sortCounts(res.TetherRequests)
	} else {
		return res, fmt.Errorf("w3: read tether-node's metrics: %w", err)
	}
	return res, nil
}

// currency tracks the host pods whose status is not what Tether derives from their member pod.
type currency struct {
	host, member corev1listers.PodLister
	mu           sync.Mutex
	stale        map[string]bool
}

func (c *currency) check(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, herr := c.host.Pods(p.Namespace).Get(p.Name)
	m, merr := c.member.Pods(p.Namespace).Get(p.Name)
	switch {
	case herr != nil:
		delete(c.stale, p.Name) // no host pod: nothing to be current
	case merr != nil || !equality.Semantic.DeepEqual(h.Status, forge.PodStatus(h, m)):
		c.stale[p.Name] = true
	default:
		delete(c.stale, p.Name)
	}
}

// count returns the host pods not current and all host pods.
func (c *currency) count() (notCurrent, total int) {
	c.mu.Lock()
	notCurrent = len(c.stale)
	c.mu.Unlock()
	hs, _ := c.host.List(labels.Everything())
	return notCurrent, len(hs)
}

// restartContainers bumps the restart count of each pod's containers, as a kubelet would after a crash; it
// returns how many patches failed.
func restartContainers(ctx context.Context, c *cluster, pods []*corev1.Pod, concurrency int) int {
	var failed atomic.Int64
	next := make(chan *corev1.Pod)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for p := range next {
				cs := make([]corev1.ContainerStatus, len(p.Status.ContainerStatuses))
				for i, s := range p.Status.ContainerStatuses {
					s.DeepCopyInto(&cs[i])
					cs[i].RestartCount++
				}
				patch, _ := json.Marshal(map[string]any{"status": map[string]any{"containerStatuses": cs}})
				if _, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch,
					metav1.PatchOptions{}, "status"); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	for _, p := range pods {
		next <- p
	}
	close(next)
	wg.Wait()
	return int(failed.Load())
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodeBack reports whether tether-m1 is Ready and its lease was renewed since the restart: the new process
// serves it.
func nodeBack(ctx context.Context, e *env, since time.Time) bool {
	n, err := e.host.client.CoreV1().Nodes().Get(ctx, "tether-m1", metav1.GetOptions{})
	if err != nil || !nodeReady(n) {
		return false
	}
	l, err := e.host.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "tether-m1", metav1.GetOptions{})
	return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
