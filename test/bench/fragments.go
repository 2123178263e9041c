package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/sandbox"
)

// W5, the fragmentation scenario: members whose free CPU is split into fragments, and a mix of pod sizes of which
// some fit only one member's nodes and some none. The host scheduler sees one big node per member and binds pods
// where they may not fit; tether-descheduler moves those. Run without it, then with it, on the same clusters.

// fragmentMembers are W5's members: m1 has four nodes of 2 CPU, m2 two of 4 CPU (8 CPU each in the host's eyes).
func fragmentMembers() []sandbox.MemberConfig {
	return []sandbox.MemberConfig{
		sandbox.UniformMember("m1", 4, sandbox.NodeConfig{CPU: "2", Memory: "16Gi", Pods: 110}),
		sandbox.UniformMember("m2", 2, sandbox.NodeConfig{CPU: "4", Memory: "32Gi", Pods: 110}),
	}
}

// fragmentMix is W5's pods: one single-replica Deployment each, created interleaved.
var fragmentMix = []struct {
	size string
	cpu  string
	n    int
}{{"small", "1", 6}, {"large", "3", 4}, {"xl", "5", 2}}

// fragmentsResult is W5.
type fragmentsResult struct {
	Pods int `json:"pods"`
	// Fit is how many of them the member nodes can hold at once (first-fit decreasing over the nodes' allocatable).
	Fit int `json:"fit"`
	// UnschedulableFor is the descheduler's wait before it evicts a pod stuck in its member.
	UnschedulableFor time.Duration `json:"unschedulableFor"`
	Without          *fragmentsRun `json:"without"`
	With             *fragmentsRun `json:"with"`
}

// fragmentsRun is one pass of W5.
type fragmentsRun struct {
	// Running60 and Running120 count the workloads with a Running pod 60 s and 120 s after the creates.
	Running60  int `json:"running60"`
	Running120 int `json:"running120"`
	// Evicted counts the pods that replaced an evicted one; EvictedTwice the workloads evicted more than once.
	Evicted      int `json:"evicted"`
	EvictedTwice int `json:"evictedTwice"`
	// Placement counts the workloads' pods at 120 s by size, virtual node and phase ("large tether-m2 Running": 2).
	Placement map[string]int `json:"placement"`
}

// runFragments brings up W5's clusters with tether-node, tether-webhook (the avoid record turns into node affinity
// there) and, for the second pass, tether-descheduler with the sandbox's policy.
func runFragments(ctx context.Context, o *options, tools *sandbox.Tools, bins map[string]string, dir string, log io.Writer) (*fragmentsResult, error) {
	e, err := upEnvWith(ctx, o, tools, bins[sandbox.TetherNode], dir, "bench-w5", fragmentMembers(), log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.down(context.WithoutCancel(ctx)) }()
	ports, err := sandbox.FreePorts(3)
	if err != nil {
		return nil, err
	}
	if _, err := e.st.StartProcess(sandbox.TetherWebhook, e.st.WebhookArgs(bins[sandbox.TetherWebhook], ports, ports+1)...); err != nil {
		return nil, err
	}
	res := &fragmentsResult{UnschedulableFor: 10 * time.Second} // the sandbox policy's
	for _, m := range fragmentMix {
		res.Pods += m.n
	}
	if res.Fit, err = fragmentOracle(ctx, e); err != nil {
		return nil, err
	}
	if res.Without, err = fragmentPass(ctx, e, "bench-w5-without"); err != nil {
		return res, err
	}
	policy, err := e.st.WriteDeschedulerPolicy("bench-"+sandbox.DeschedulerPolicyFile, sandbox.DemoDeschedulerPolicy())
	if err != nil {
		return res, err
	}
	if _, err := e.st.StartProcess(sandbox.TetherDescheduler, e.st.DeschedulerArgs(bins[sandbox.TetherDescheduler], policy, ports+2)...); err != nil {
		return res, err
	}
	defer func() { _ = e.st.StopProcess(sandbox.TetherDescheduler, syscall.SIGTERM) }()
	res.With, err = fragmentPass(ctx, e, "bench-w5-with")
	return res, err
}

// fragmentOracle is how many of W5's pods the member nodes can hold at once: first-fit decreasing by CPU over
// every member node's allocatable.
func fragmentOracle(ctx context.Context, e *env) (int, error) {
	var free []int64
	for _, m := range e.members {
		nodes, err := m.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		for _, n := range nodes.Items {
			free = append(free, n.Status.Allocatable.Cpu().MilliValue())
		}
	}
	var asks []int64
	for _, m := range fragmentMix {
		for range m.n {
			q := resource.MustParse(m.cpu)
			asks = append(asks, q.MilliValue())
		}
	}
	sort.Slice(asks, func(i, j int) bool { return asks[i] > asks[j] })
	fit := 0
	for _, a := range asks {
		if i := slices.IndexFunc(free, func(f int64) bool { return f >= a }); i >= 0 {
			free[i] -= a
			fit++
		}
	}
	return fit, nil
}

// fragmentPass creates W5's workloads in an offloaded namespace ns, counts the Running ones at 60 s and 120 s and
// the pods that replaced evicted ones, then deletes the namespace and waits until its pods are gone.
func fragmentPass(ctx context.Context, e *env, ns string) (*fragmentsRun, error) {
	host := e.host.client
	if _, err := host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{api.LabelOffload: api.OffloadEnabled}}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := e.st.WaitWebhook(ctx, ns, time.Minute); err != nil {
		return nil, err
	}
	w, err := host.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	created := map[string]int{} // workload → pods created
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				mu.Lock()
				created[p.Labels["app"]]++
				mu.Unlock()
			}
		}
	}()
	defer w.Stop()
	start := time.Now()
	for i := 0; ; i++ {
		made := false
		for _, m := range fragmentMix {
			if i >= m.n {
				continue
			}
			made = true
			name := fmt.Sprintf("%s-%d", m.size, i)
			if _, err := host.AppsV1().Deployments(ns).Create(ctx, fragmentDeployment(name, m.cpu), metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		}
		if !made {
			break
		}
	}
	run := &fragmentsRun{}
	running := func() (int, error) {
		pods, err := host.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		apps := map[string]bool{}
		run.Placement = map[string]int{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Status.Phase == corev1.PodRunning {
				apps[p.Labels["app"]] = true
			}
			size, _, _ := strings.Cut(p.Labels["app"], "-")
			node := p.Spec.NodeName
			if node == "" {
				node = "unbound"
			}
			run.Placement[size+" "+node+" "+string(p.Status.Phase)]++
		}
		return len(apps), nil
	}
	for _, at := range []struct {
		d   time.Duration
		dst *int
	}{{60 * time.Second, &run.Running60}, {120 * time.Second, &run.Running120}} {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(start.Add(at.d))):
		}
		n, err := running()
		if err != nil {
			return nil, err
		}
		*at.dst = n
	}
	mu.Lock()
	for _, n := range created {
		run.Evicted += n - 1
		if n > 2 {
			run.EvictedTwice++
		}
	}
	mu.Unlock()
	if err := host.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return run, err
	}
	return run, wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := host.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
}

func fragmentDeployment(name, cpu string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	pod := benchPod(name, nil)
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("64Mi")}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}
}

// buildBinaries builds Tether's commands from the checkout into dir, by process name.
func buildBinaries(ctx context.Context, repo, dir string, names ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range names {
		bin := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
		cmd.Dir = repo
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", name, err, b)
		}
		out[name] = bin
	}
	return out, nil
}

// printFragments prints W5.
func printFragments(w io.Writer, r *fragmentsResult) {
	fmt.Fprintf(w, "\nW5 fragments (%d single-pod workloads: 6 × 1 CPU, 4 × 3 CPU, 2 × 5 CPU; m1 4 nodes × 2 CPU, m2 2 × 4 CPU; %d fit at once)\n", r.Pods, r.Fit)
	row := func(name string, p *fragmentsRun) {
		if p == nil {
			return
		}
		share := func(n int) string { return fmt.Sprintf("%d (%.0f%%)", n, 100*float64(n)/float64(max(r.Fit, 1))) }
		fmt.Fprintf(w, "%-26s Running at 60 s %-9s at 120 s %-9s evicted %d, more than once %d\n", name, share(p.Running60), share(p.Running120), p.Evicted, p.EvictedTwice)
		var where []string
		for _, k := range slices.Sorted(maps.Keys(p.Placement)) {
			where = append(where, fmt.Sprintf("%s ×%d", k, p.Placement[k]))
		}
		fmt.Fprintf(w, "%-26s at 120 s: %s\n", "", strings.Join(where, ", "))
	}
	row("without tether-descheduler", r.Without)
	row(fmt.Sprintf("with (unschedulableFor %s)", r.UnschedulableFor), r.With)
}
