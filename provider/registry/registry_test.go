package registry

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/api"
)

// recorder keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []string // "<name> <type> <reason> <message>"
}

func (r *recorder) Event(obj k8sruntime.Object, eventtype, reason, message string) {
	name := ""
	if o, ok := obj.(metav1.Object); ok {
		name = o.GetName()
	}
	r.mu.Lock()
	r.events = append(r.events, strings.Join([]string{name, eventtype, reason, message}, " "))
	r.mu.Unlock()
}

func (r *recorder) Eventf(obj k8sruntime.Object, eventtype, reason, format string, args ...any) {
	r.Event(obj, eventtype, reason, fmt.Sprintf(format, args...))
}

func (r *recorder) AnnotatedEventf(obj k8sruntime.Object, _ map[string]string, eventtype, reason, format string, args ...any) {
	r.Eventf(obj, eventtype, reason, format, args...)
}

// has reports whether some event of obj has reason and a message containing text.
func (r *recorder) has(obj, reason, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if strings.HasPrefix(e, obj+" ") && strings.Contains(e, " "+reason+" ") && strings.Contains(e, text) {
			return true
		}
	}
	return false
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, "\n")
}

// env is a fake host and fake members; a member's clients are chosen by its rest config's server.
type env struct {
	t        *testing.T
	host     *fake.Clientset
	members  map[string]*fake.Clientset // by server URL
	recorder *recorder
	metrics  *prometheus.Registry
	mu       sync.Mutex
	servers  []string // servers NewClients was called for, in order
}

func newEnv(t *testing.T) *env {
	return &env{t: t, host: fake.NewClientset(), members: map[string]*fake.Clientset{}, recorder: &recorder{},
		metrics: prometheus.NewRegistry()}
}

// member adds a fake member cluster with one ready node behind server.
func (e *env) member(server string) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	e.members[server] = fake.NewClientset(n)
}

func (e *env) clients(cfg *rest.Config) (Clients, error) {
	e.mu.Lock()
	e.servers = append(e.servers, cfg.Host)
	e.mu.Unlock()
	cs, ok := e.members[cfg.Host]
	if !ok {
		return Clients{}, fmt.Errorf("no member at %s", cfg.Host)
	}
	return Clients{Kube: cs, Probe: func(context.Context) error { return nil }}, nil
}

// start runs a registry on e until the test ends, and returns it.
func (e *env) start(mutate func(*Config)) *Registry {
	t := e.t
	ctx, cancel := context.WithCancel(t.Context())
	factory := informers.NewSharedInformerFactory(e.host, 0)
	cfg := Config{
		Host: e.host, ClusterID: "host-1",
		HostPods: factory.Core().V1().Pods(), HostConfigMaps: factory.Core().V1().ConfigMaps(),
		HostSecrets: factory.Core().V1().Secrets(), HostServices: factory.Core().V1().Services(),
		HostEndpointSlices:  factory.Discovery().V1().EndpointSlices(),
		HostServiceAccounts: factory.Core().V1().ServiceAccounts(),
		Recorder:            e.recorder, Metrics: e.metrics, NewClients: e.clients,
		MemberSecrets: true, Namespace: api.DefaultNamespace,
		RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, StartTimeout: time.Minute,
		Node: NodeSettings{NodePrefix: api.DefaultNodePrefix, KubeletAddress: "127.0.0.1", KubeletPort: 10250,
			KubeletBind: "127.0.0.1", MemberQPS: 100, MemberBurst: 100, QueueQPS: 100, QueueBurst: 100, PodWorkers: 2,
			HealthInterval: time.Hour, HealthTimeout: time.Second, NodeStatusInterval: time.Hour, LeaseDuration: 40,
			RepairInterval: time.Minute},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Informers must be requested before the factory starts.
	for _, inf := range []interface {
		Informer() cache.SharedIndexInformer
	}{cfg.HostPods, cfg.HostConfigMaps,
		cfg.HostSecrets, cfg.HostServices, cfg.HostServiceAccounts, cfg.HostEndpointSlices} {
		inf.Informer()
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30 s after its context ended")
		}
		factory.Shutdown()
	})
	return r
}

func kubeconfig(server string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: secret-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, server)
}

func memberSecret(name, member string, kc []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: api.DefaultNamespace, Labels: map[string]string{api.LabelMember: member}},
		Data:       map[string][]byte{api.MemberSecretKubeconfig: kc},
	}
}

// eventually polls cond every 10 ms for up to 20 s and fails with what it last said.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) nodeExists(name string) error {
	_, err := e.host.CoreV1().Nodes().Get(e.t.Context(), name, metav1.GetOptions{})
	return err
}

func (e *env) nodeGone(name string) func() error {
	return func() error {
		if err := e.nodeExists(name); !apierrors.IsNotFound(err) {
			return fmt.Errorf("get node %s: %v", name, err)
		}
		return nil
	}
}

func (e *env) serving(r *Registry, member string, want bool) func() error {
	return func() error {
		if got := r.Serving(member); got != want {
			return fmt.Errorf("Serving(%s) = %v, want %v; events:\n%s", member, got, want, e.recorder)
		}
		return nil
	}
}

func TestFlagMember(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	r := e.start(func(c *Config) {
		c.MemberSecrets = false
		c.Members = []Member{{Name: "m1", Config: &rest.Config{Host: "https://m1"}}}
	})
	eventually(t, "node registered", func() error { return e.nodeExists("tether-m1") })
	eventually(t, "serving", e.serving(r, "m1", true))
	if ms := r.MembersOn(10250); len(ms) != 1 || ms[0].NodeName != "tether-m1" {
		t.Errorf("MembersOn(10250) = %v", ms)
	}
}

func TestSecretMemberLifecycle(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	e.member("https://m1-new")
	r := e.start(nil)
	ctx := t.Context()
	secrets := e.host.CoreV1().Secrets(api.DefaultNamespace)

	// Add.
	if _, err := secrets.Create(ctx, memberSecret("m1", "m1", kubeconfig("https://m1")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node registered", func() error { return e.nodeExists("tether-m1") })
	eventually(t, "serving", e.serving(r, "m1", true))
	if !e.recorder.has("m1", ReasonMemberStarted, "tether-m1") {
		t.Errorf("no %s event:\n%s", ReasonMemberStarted, e.recorder)
	}

	// A change that does not concern the member (a label) does not restart it.
	s, _ := secrets.Get(ctx, "m1", metav1.GetOptions{})
	s.Labels["team"] = "a"
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Change of kubeconfig: restarted on the new one.
	s, _ = secrets.Get(ctx, "m1", metav1.GetOptions{})
	s.Data[api.MemberSecretKubeconfig] = kubeconfig("https://m1-new")
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "restarted on the new kubeconfig", func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.servers) == 0 || e.servers[len(e.servers)-1] != "https://m1-new" {
			return fmt.Errorf("clients built for %v", e.servers)
		}
		return nil
	})
	eventually(t, "serving again", e.serving(r, "m1", true))
	e.mu.Lock()
	if got := strings.Join(e.servers, " "); got != "https://m1 https://m1-new" {
		t.Errorf("clients built for %s, want one start per kubeconfig", got)
	}
	e.mu.Unlock()

	// Remove: the member stops and its node goes.
	if err := secrets.Delete(ctx, "m1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stopped", e.serving(r, "m1", false))
	eventually(t, "node deleted", e.nodeGone("tether-m1"))
	if got := testutil.ToFloat64(r.metrics.members); got != 0 {
		t.Errorf("tether_node_members = %v after removal", got)
	}
}

func TestInvalidSecretsAreReported(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	r := e.start(nil)
	ctx := t.Context()
	execConfig := []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://m1", certificate-authority: /etc/ca.crt}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`)
	for _, s := range []*corev1.Secret{
		memberSecret("exec", "exec", execConfig),
		memberSecret("nokey", "nokey", nil),
		memberSecret("long", strings.Repeat("a", 60), kubeconfig("https://m1")),
	} {
		if _, err := e.host.CoreV1().Secrets(api.DefaultNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct{ secret, text string }{
		{"exec", "exec credential plugin"}, {"exec", "certificate-authority"}, {"nokey", "no key kubeconfig"},
		{"long", "longer than 63"},
	} {
		eventually(t, "event on "+want.secret, func() error {
			if !e.recorder.has(want.secret, ReasonMemberInvalid, want.text) {
				return fmt.Errorf("no %s event saying %q:\n%s", ReasonMemberInvalid, want.text, e.recorder)
			}
			return nil
		})
	}
	if r.Serving("exec") || r.Serving("nokey") {
		t.Error("an invalid member is served")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.servers) != 0 {
		t.Errorf("clients built for %v", e.servers)
	}
}

func TestFailedStartIsRetriedAndReported(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	// The host refuses to register the node twice, then accepts.
	var mu sync.Mutex
	refused := 0
	e.host.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if refused < 2 {
			refused++
			return true, nil, apierrors.NewServiceUnavailable("host is busy")
		}
		return false, nil, nil
	})
	r := e.start(nil)
	if _, err := e.host.CoreV1().Secrets(api.DefaultNamespace).Create(t.Context(), memberSecret("m1", "m1", kubeconfig("https://m1")),
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node registered after retries", func() error { return e.nodeExists("tether-m1") })
	eventually(t, "serving", e.serving(r, "m1", true))
	if got := testutil.ToFloat64(r.metrics.startFailures.WithLabelValues("m1")); got < 2 {
		t.Errorf("tether_node_member_failures_total = %v, want ≥ 2", got)
	}
	if !e.recorder.has("m1", ReasonMemberStartFailed, "host is busy") {
		t.Errorf("no %s event:\n%s", ReasonMemberStartFailed, e.recorder)
	}
}

func TestNotRoutedWhileNotSynced(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	// The member refuses to list pods: its caches never sync.
	e.members["https://m1"].PrependReactor("list", "pods", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	r := e.start(func(c *Config) { c.StartTimeout = 50 * time.Millisecond })
	if _, err := e.host.CoreV1().Secrets(api.DefaultNamespace).Create(t.Context(), memberSecret("m1", "m1", kubeconfig("https://m1")),
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reported", func() error {
		if !e.recorder.has("m1", ReasonMemberNotSynced, "still trying") {
			return fmt.Errorf("no %s event:\n%s", ReasonMemberNotSynced, e.recorder)
		}
		return nil
	})
	if r.Serving("m1") || len(r.MembersOn(10250)) != 0 {
		t.Error("a member whose caches never synced is routed to")
	}
	if got := testutil.ToFloat64(r.metrics.notSynced.WithLabelValues("m1")); got != 1 {
		t.Errorf("tether_node_member_not_synced_total = %v, want 1", got)
	}
}

func TestSecretForAMemberServedElsewhere(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	e.start(func(c *Config) { c.Members = []Member{{Name: "m1", Config: &rest.Config{Host: "https://m1"}}} })
	if _, err := e.host.CoreV1().Secrets(api.DefaultNamespace).Create(t.Context(), memberSecret("other", "m1", kubeconfig("https://m1")),
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "conflict reported", func() error {
		if !e.recorder.has("other", ReasonMemberConflict, "already served from flag") {
			return fmt.Errorf("no %s event:\n%s", ReasonMemberConflict, e.recorder)
		}
		return nil
	})
}

// Adding and removing a member many times leaves no goroutine behind and the heap flat.
func TestRestartsLeaveNothingBehind(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	r := e.start(nil)
	ctx := t.Context()
	secrets := e.host.CoreV1().Secrets(api.DefaultNamespace)
	cycle := func() {
		t.Helper()
		if _, err := secrets.Create(ctx, memberSecret("m1", "m1", kubeconfig("https://m1")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "serving", e.serving(r, "m1", true))
		if err := secrets.Delete(ctx, "m1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "stopped", e.serving(r, "m1", false))
		eventually(t, "node deleted", e.nodeGone("tether-m1"))
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	cycle() // warm up what is started once (watches of the fake clientsets, event handling)
	baseGoroutines, baseHeap := runtime.NumGoroutine(), heap()
	const n = 20
	for range n {
		cycle()
	}
	// A leaked run leaves dozens of goroutines per restart (informers, queues, workers); a few that live once
	// (watches of the fake clientsets started lazily, timers of a queue) may come and go between two readings.
	const slack = 5
	eventually(t, "goroutines back to their number before", func() error {
		if got := runtime.NumGoroutine(); got > baseGoroutines+slack {
			return fmt.Errorf("%d goroutines after %d restarts, %d before", got, n, baseGoroutines)
		}
		return nil
	})
	// A leaked member (its caches, its pod controller) costs far more than this.
	if got := heap(); got > baseHeap+4<<20 {
		t.Errorf("heap %d KiB after %d restarts, %d KiB before", got>>10, n, baseHeap>>10)
	}
}

func TestParseMemberKubeconfig(t *testing.T) {
	if _, err := ParseMemberKubeconfig(kubeconfig("https://m1")); err != nil {
		t.Errorf("inline token: %v", err)
	}
	bad := []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://m1", proxy-url: "http://proxy"}}]
users: [{name: u, user: {tokenFile: /var/run/token, client-certificate: /c, auth-provider: {name: oidc}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`)
	_, err := ParseMemberKubeconfig(bad)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"proxy-url", "tokenFile", "client-certificate", "auth-provider", "no token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for i := range 6 {
		got = append(got, backoff(i, time.Second, 10*time.Second))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
}

// The kubelet API reaches a member pod only when it is Tether's copy of the very host pod asked for.
func TestMemberOfOnlyOwnedCopies(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	ctx := t.Context()
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	hostPod := func(name, uid string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "app", UID: types.UID(uid)},
			Spec: corev1.PodSpec{NodeName: "tether-m1"}}
	}
	memberPod := func(name string, labels map[string]string, hostUID string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "app", Labels: labels}}
		if hostUID != "" {
			p.Annotations = map[string]string{api.AnnotationHostUID: hostUID}
		}
		return p
	}
	for _, p := range []*corev1.Pod{hostPod("copy", "u1"), hostPod("unowned", "u2"), hostPod("older", "u3"), hostPod("none", "u4")} {
		if _, err := e.host.CoreV1().Pods("app").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{memberPod("copy", owner.Labels(), "u1"), memberPod("unowned", map[string]string{"app": "theirs"}, "u2"),
		memberPod("older", owner.Labels(), "u0")} {
		if _, err := e.members["https://m1"].CoreV1().Pods("app").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The pod controller and the repair pass would put the member right (delete the stale copy, create the
	// missing ones): the member refuses, so that the state under test stays.
	for _, verb := range []string{"create", "delete"} {
		e.members["https://m1"].PrependReactor(verb, "pods", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
			return true, nil, apierrors.NewServiceUnavailable("frozen for the test")
		})
	}
	r := e.start(func(c *Config) {
		c.MemberSecrets = false
		c.Members = []Member{{Name: "m1", Config: &rest.Config{Host: "https://m1"}}}
	})
	eventually(t, "serving", e.serving(r, "m1", true))
	eventually(t, "the owned copy is routed to", func() error {
		_, err := r.MemberOf("app", "copy")
		return err
	})
	for _, name := range []string{"unowned", "older", "none"} {
		if m, err := r.MemberOf("app", name); err == nil || !strings.Contains(err.Error(), "no copy of this pod that Tether owns") {
			t.Errorf("MemberOf(%s) = %v, %v; want a refusal", name, m, err)
		}
	}
	if _, err := r.MemberOf("app", "missing"); err == nil {
		t.Error("MemberOf(an unknown pod) routes")
	}
}

// A member removed from the host loses what Tether created there for its node, and nothing else.
func TestRemovedMemberIsCleanedUp(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	ctx := t.Context()
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	sibling := api.Owner{ClusterID: "host-1", NodeName: "tether-m1b"}
	nsLabels := map[string]string{api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: "host-1"}
	mc := e.members["https://m1"]
	for _, obj := range []k8sruntime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ours", Labels: nsLabels}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shared", Labels: nsLabels}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}},
	} {
		if err := mc.Tracker().Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	create := func(obj k8sruntime.Object) {
		t.Helper()
		if err := mc.Tracker().Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(ns, name string, l map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l, UID: types.UID(ns + "-" + name)}
	}
	// Copies of running host pods: only the cleanup deletes them.
	copyOf := func(ns, name string) *corev1.Pod {
		t.Helper()
		h, err := e.host.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("host-" + ns + "-" + name)},
			Spec: corev1.PodSpec{NodeName: "tether-m1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := &corev1.Pod{ObjectMeta: meta(ns, name, owner.Labels())}
		p.Annotations = map[string]string{api.AnnotationHostUID: string(h.UID)}
		return p
	}
	create(copyOf("ours", "copy"))
	create(&corev1.ConfigMap{ObjectMeta: meta("ours", "cm", owner.Labels())})
	// A Secret copy, known from its record (tether-node cannot list Secrets), and the quota that counts Secrets
	// (this fake has no quota controller: it counts none left).
	create(&corev1.Secret{ObjectMeta: meta("ours", "s", owner.Labels())})
	create(&corev1.ConfigMap{ObjectMeta: meta("ours", owner.SecretRecordName(), owner.Labels()),
		Data: map[string]string{"s": `{"uid":"ours-s","host":"h","hash":"x"}`}})
	create(&corev1.ResourceQuota{ObjectMeta: meta("ours", api.ObjectCountQuota, owner.Labels()),
		Status: corev1.ResourceQuotaStatus{Used: corev1.ResourceList{"count/secrets": resource.MustParse("0")}}})
	create(&corev1.ServiceAccount{ObjectMeta: meta("ours", "sa", owner.Labels())})
	create(&corev1.ServiceAccount{ObjectMeta: meta("ours", "default", nil)})
	create(copyOf("shared", "copy"))
	create(&corev1.Pod{ObjectMeta: meta("shared", "sibling", sibling.Labels())})
	create(&corev1.Pod{ObjectMeta: meta("theirs", "app", map[string]string{"app": "x"})})

	r := e.start(func(c *Config) { c.StartTimeout = 50 * time.Millisecond })
	secrets := e.host.CoreV1().Secrets(api.DefaultNamespace)
	if _, err := secrets.Create(ctx, memberSecret("m1", "m1", kubeconfig("https://m1")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "serving", e.serving(r, "m1", true))
	// Serving turns true before the node is registered: wait for it, or "node deleted" would hold at once.
	eventually(t, "node registered", func() error { return e.nodeExists("tether-m1") })
	if err := secrets.Delete(ctx, "m1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node deleted", e.nodeGone("tether-m1"))
	gone := func(err error) bool { return apierrors.IsNotFound(err) }
	for what, err := range map[string]error{
		"pod ours/copy":   getErr(mc.CoreV1().Pods("ours").Get(ctx, "copy", metav1.GetOptions{})),
		"configmap":       getErr(mc.CoreV1().ConfigMaps("ours").Get(ctx, "cm", metav1.GetOptions{})),
		"secret":          getErr(mc.CoreV1().Secrets("ours").Get(ctx, "s", metav1.GetOptions{})),
		"record":          getErr(mc.CoreV1().ConfigMaps("ours").Get(ctx, owner.SecretRecordName(), metav1.GetOptions{})),
		"serviceaccount":  getErr(mc.CoreV1().ServiceAccounts("ours").Get(ctx, "sa", metav1.GetOptions{})),
		"namespace ours":  getErr(mc.CoreV1().Namespaces().Get(ctx, "ours", metav1.GetOptions{})),
		"pod shared/copy": getErr(mc.CoreV1().Pods("shared").Get(ctx, "copy", metav1.GetOptions{})),
	} {
		if !gone(err) {
			t.Errorf("%s left behind (%v)", what, err)
		}
	}
	for what, err := range map[string]error{
		"the sibling node's pod": getErr(mc.CoreV1().Pods("shared").Get(ctx, "sibling", metav1.GetOptions{})),
		"namespace shared":       getErr(mc.CoreV1().Namespaces().Get(ctx, "shared", metav1.GetOptions{})),
		"the member's own pod":   getErr(mc.CoreV1().Pods("theirs").Get(ctx, "app", metav1.GetOptions{})),
		"namespace theirs":       getErr(mc.CoreV1().Namespaces().Get(ctx, "theirs", metav1.GetOptions{})),
	} {
		if err != nil {
			t.Errorf("%s was deleted (%v)", what, err)
		}
	}
}

// An unreachable member removed from the host keeps what Tether created there, and its node says how to clean up.
func TestRemovedUnreachableMemberIsLeftAlone(t *testing.T) {
	e := newEnv(t)
	e.member("https://m1")
	ctx := t.Context()
	owner := api.Owner{ClusterID: "host-1", NodeName: "tether-m1"}
	mc := e.members["https://m1"]
	// A running pod and its copy.
	if _, err := e.host.CoreV1().Pods("ours").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ours", Name: "copy", UID: "host-uid"},
		Spec: corev1.PodSpec{NodeName: "tether-m1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := mc.Tracker().Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ours", Name: "copy", Labels: owner.Labels(),
		Annotations: map[string]string{api.AnnotationHostUID: "host-uid"}}}); err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	r := e.start(func(c *Config) {
		c.NewClients = func(cfg *rest.Config) (Clients, error) {
			cl, err := e.clients(cfg)
			cl.Probe = func(context.Context) error {
				if down.Load() {
					return errors.New("connection refused")
				}
				return nil
			}
			return cl, err
		}
	})
	secrets := e.host.CoreV1().Secrets(api.DefaultNamespace)
	if _, err := secrets.Create(ctx, memberSecret("m1", "m1", kubeconfig("https://m1")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "serving", e.serving(r, "m1", true))
	eventually(t, "node registered", func() error { return e.nodeExists("tether-m1") })
	down.Store(true)
	if err := secrets.Delete(ctx, "m1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node deleted", e.nodeGone("tether-m1"))
	if _, err := mc.CoreV1().Pods("ours").Get(ctx, "copy", metav1.GetOptions{}); err != nil {
		t.Errorf("the pod of an unreachable member was deleted: %v", err)
	}
	if !e.recorder.has("tether-m1", ReasonMemberLeftBehind, "kubectl delete pods,configmaps,secrets,serviceaccounts,persistentvolumeclaims -A -l "+owner.Selector()) {
		t.Errorf("no %s event:\n%s", ReasonMemberLeftBehind, e.recorder)
	}
}

func getErr[T any](_ T, err error) error { return err }
