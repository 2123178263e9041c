package ha_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/test/e2e/framework"
)

const (
	burst = 200
	// takeoverLimit is what the issue promises from the leader's death to the standby's lease.
	takeoverLimit = 15 * time.Second
	timeout       = 3 * time.Minute
)

// SIGKILL the leader in the middle of a 200-pod burst: the standby holds the lease within 15 s, both virtual nodes
// stay Ready throughout and publish the new leader's kubelet endpoint, and in the end every host pod has exactly one
// Running member pod. Of the two replicas (the killed one started again, as its Deployment would), exactly one
// reports tether_node_leader 1.
func TestLeaderKilledDuringBurst(t *testing.T) {
	ctx := t.Context()
	leader := waitLeader(t)
	standby := other(leader)
	t.Logf("leader %s, standby %s", leader.name, standby.name)
	waitEndpoints(t, leader)

	notReady := watchReady(t)

	ns := env.Host.Namespace(t, nil)
	if _, err := env.Host.Client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "burst", burst), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// In the middle of the burst: some member pods exist, most do not yet.
	var created int
	framework.Eventually(t, time.Minute, "the burst under way in the members", func(ctx context.Context) error {
		var err error
		if created, err = memberPodCount(ctx, ns); err != nil {
			return err
		}
		if created < 20 {
			return fmt.Errorf("%d member pods", created)
		}
		return nil
	})
	killed := time.Now()
	env.StopProcess(t, leader.name, syscall.SIGKILL)
	t.Logf("killed %s with %d of %d member pods created", leader.name, created, burst)

	var takeover time.Duration
	framework.Eventually(t, takeoverLimit+5*time.Second, "the standby holds the lease", func(ctx context.Context) error {
		h, err := holder(ctx)
		if err != nil {
			return err
		}
		if h != standby.name {
			return fmt.Errorf("lease held by %q", h)
		}
		takeover = time.Since(killed)
		return nil
	})
	t.Logf("takeover %s after the kill", takeover.Round(10*time.Millisecond))
	if takeover > takeoverLimit {
		t.Errorf("the standby took the lease %s after the leader's death, want at most %s", takeover, takeoverLimit)
	}

	waitOneCopyEach(t, ns, "burst", burst)
	waitEndpoints(t, standby)
	if msgs := notReady(); len(msgs) > 0 {
		t.Errorf("virtual nodes not Ready during the takeover:\n%s", strings.Join(msgs, "\n"))
	}

	// The killed replica comes back as a standby: the lease stays where it is, and one replica leads.
	if err := env.State.RestartProcess(leader.name); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, time.Minute, "tether_node_leader 1 on exactly one replica", func(ctx context.Context) error {
		values := map[string]float64{}
		for _, r := range replicas {
			v, err := metric(ctx, r, "tether_node_leader")
			if err != nil {
				return err
			}
			values[r.name] = v
		}
		if values[standby.name] != 1 || values[leader.name] != 0 {
			return fmt.Errorf("tether_node_leader %v, want 1 on %s only", values, standby.name)
		}
		return nil
	})
	if h, err := holder(ctx); err != nil || h != standby.name {
		t.Errorf("lease held by %q (%v) after the old leader came back, want %s", h, err, standby.name)
	}
	// Both pass /healthz on their metrics address, the chart's probes: the leader with its elector's check, the
	// standby too.
	for _, r := range []*replica{standby, leader} {
		if body, err := healthz(ctx, r); err != nil || !strings.Contains(body, "[+]leaderElection ok") {
			t.Errorf("%s: /healthz?verbose: %v\n%s", r.name, err, body)
		}
	}
	// The leader's own account of the burst: both members up, the pods Running.
	framework.Eventually(t, time.Minute, "the leader's pod and member metrics", func(ctx context.Context) error {
		running := 0.0
		for _, m := range env.Members {
			up, err := metric(ctx, standby, fmt.Sprintf(`tether_node_member_up{member=%q}`, m.Name))
			if err != nil {
				return err
			}
			if up != 1 {
				return fmt.Errorf("tether_node_member_up{member=%q} = %v", m.Name, up)
			}
			n, err := metric(ctx, standby, fmt.Sprintf(`tether_node_pods{member=%q,phase="Running"}`, m.Name))
			if err != nil {
				return err
			}
			running += n
		}
		if running < burst {
			return fmt.Errorf("tether_node_pods Running: %v in all, want at least %d", running, burst)
		}
		return nil
	})
}

func other(r *replica) *replica {
	for _, o := range replicas {
		if o != r {
			return o
		}
	}
	return nil
}

// holder is the Lease's holderIdentity.
func holder(ctx context.Context) (string, error) {
	l, err := env.Host.Client.CoordinationV1().Leases(api.DefaultNamespace).Get(ctx, api.LeaderElectionLease, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return ptr.Deref(l.Spec.HolderIdentity, ""), nil
}

// waitLeader waits until one replica holds the lease and reports itself as leader.
func waitLeader(t *testing.T) *replica {
	t.Helper()
	var leader *replica
	framework.Eventually(t, time.Minute, "a replica leads", func(ctx context.Context) error {
		h, err := holder(ctx)
		if err != nil {
			return err
		}
		for _, r := range replicas {
			if r.name == h {
				if v, err := metric(ctx, r, "tether_node_leader"); err != nil || v != 1 {
					return fmt.Errorf("%s holds the lease, tether_node_leader %v (%v)", h, v, err)
				}
				leader = r
				return nil
			}
		}
		return fmt.Errorf("lease held by %q", h)
	})
	return leader
}

// waitEndpoints waits until every virtual node publishes r's kubelet API port: the leader's node controller sets it.
func waitEndpoints(t *testing.T, r *replica) {
	t.Helper()
	framework.Eventually(t, time.Minute, "virtual nodes point at "+r.name, func(ctx context.Context) error {
		for i, m := range env.Members {
			n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, api.NodeName(api.DefaultNodePrefix, m.Name), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got, want := n.Status.DaemonEndpoints.KubeletEndpoint.Port, int32(r.kubeletPort+i); got != want {
				return fmt.Errorf("node %s: kubelet port %d, want %d", n.Name, got, want)
			}
		}
		return nil
	})
}

// watchReady polls both virtual nodes every 0.5 s until the test ends; the function it returns stops the watch and
// lists every moment a node was not Ready (a failed read is retried, not counted).
func watchReady(t *testing.T) func() []string {
	ctx, cancel := context.WithCancel(t.Context())
	var (
		mu   sync.Mutex
		msgs []string
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, m := range env.Members {
				n, err := env.Host.Client.CoreV1().Nodes().Get(ctx, api.NodeName(api.DefaultNodePrefix, m.Name), metav1.GetOptions{})
				if err != nil {
					continue
				}
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
						mu.Lock()
						msgs = append(msgs, fmt.Sprintf("%s %s Ready=%s %s: %s", time.Now().Format(time.StampMilli), n.Name, c.Status, c.Reason, c.Message))
						mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	stop := func() []string {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return msgs
	}
	t.Cleanup(func() { stop() })
	return stop
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{api.NodeTypeKey: api.NodeType},
				Tolerations: []corev1.Toleration{{Key: api.TaintKey, Operator: corev1.TolerationOpEqual, Value: api.TaintValue,
					Effect: corev1.TaintEffectNoSchedule}},
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("8Mi")}}}},
			}},
		},
	}
}

// memberPodCount counts the pods of ns in every member.
func memberPodCount(ctx context.Context, ns string) (int, error) {
	n := 0
	for _, m := range env.Members {
		l, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		n += len(l.Items)
	}
	return n, nil
}

// waitOneCopyEach waits until the Deployment's n host pods run, each on a virtual node, and the members hold
// exactly n pods of ns: one per host pod (by the host UID annotation, in the member of its node), each Running.
func waitOneCopyEach(t *testing.T, ns, app string, n int) {
	t.Helper()
	framework.Eventually(t, timeout, fmt.Sprintf("%d host pods Running, each with exactly one Running member pod", n), func(ctx context.Context) error {
		hosts, err := env.Host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		nodeOf := map[types.UID]string{}
		for _, h := range hosts.Items {
			if h.DeletionTimestamp != nil {
				return fmt.Errorf("host pod %s is being deleted", h.Name)
			}
			if h.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("host pod %s on %q is %s", h.Name, h.Spec.NodeName, h.Status.Phase)
			}
			nodeOf[h.UID] = h.Spec.NodeName
		}
		if len(nodeOf) != n {
			return fmt.Errorf("%d host pods, want %d", len(nodeOf), n)
		}
		copies := map[types.UID]int{}
		total := 0
		for _, m := range env.Members {
			l, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, p := range l.Items {
				total++
				uid := types.UID(p.Annotations[api.AnnotationHostUID])
				node, ok := nodeOf[uid]
				switch {
				case !ok:
					return fmt.Errorf("member %s: pod %s is the copy of %q, no live host pod", m.Name, p.Name, uid)
				case node != api.NodeName(api.DefaultNodePrefix, m.Name):
					return fmt.Errorf("member %s: pod %s copies a host pod on %s", m.Name, p.Name, node)
				case p.Status.Phase != corev1.PodRunning:
					return fmt.Errorf("member %s: pod %s is %s", m.Name, p.Name, p.Status.Phase)
				}
				copies[uid]++
			}
		}
		if total != n || len(copies) != n {
			return fmt.Errorf("%d member pods copying %d host pods, want %d and %d", total, len(copies), n, n)
		}
		return nil
	})
}

// healthz reads a replica's /healthz?verbose (the checks one per line); a status other than 200 is an error.
func healthz(ctx context.Context, r *replica) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := get(ctx, r, "/healthz?verbose")
	if body == nil {
		return "", err
	}
	defer body.Close()
	b, rerr := io.ReadAll(body)
	return string(b), errors.Join(err, rerr)
}

// get GETs path from a replica's metrics address. The body comes back (to be closed) whenever there is one; a
// status other than 200 is an error beside it.
func get(ctx context.Context, r *replica, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.metrics+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: GET %s: %s", r.name, path, resp.Status)
	}
	return resp.Body, err
}

// metric reads one sample (name with its labels as Prometheus prints them) from a replica's /metrics.
func metric(ctx context.Context, r *replica, sample string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := get(ctx, r, "/metrics")
	if body != nil {
		defer body.Close()
	}
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s in /metrics", r.name, sample)
}
