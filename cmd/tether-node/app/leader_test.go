package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/record"

	"github.com/tetherkube/tether/api"
)

// fast are short lease timings, so that the tests see takeovers in about a second.
func fast(id string) LeaderElection {
	return LeaderElection{Enabled: true, ResourceName: api.LeaderElectionLease, Identity: id,
		LeaseDuration: time.Second, RenewDeadline: 600 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
}

// journal records who served when, in order.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.entries = append(j.entries, s)
	j.mu.Unlock()
}

func (j *journal) snapshot() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

// serveUntilDone records its start and end, and serves until ctx ends.
func (j *journal) serve(id string, started chan<- struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		j.add(id + " start")
		close(started)
		<-ctx.Done()
		j.add(id + " stop")
		return nil
	}
}

func within(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %s", what, d)
	}
}

func holder(t *testing.T, cs *fake.Clientset) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(api.DefaultNamespace).Get(t.Context(), api.LeaderElectionLease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *l.Spec.HolderIdentity
}

// A standby serves nothing while the leader holds the lease; once the leader shuts down cleanly (its serving over,
// the lease released) the standby serves.
func TestStandbyServesOnlyOnceTheLeaderIsGone(t *testing.T) {
	cs := fake.NewClientset()
	rec := record.NewFakeRecorder(100)
	var j journal
	aCtx, stopA := context.WithCancel(t.Context())
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go func() {
		aDone <- runElected(aCtx, fast("a"), api.DefaultNamespace, cs, rec, nil, j.serve("a", aStarted))
	}()
	within(t, aStarted, 5*time.Second, "a leads")
	bCtx, stopB := context.WithCancel(t.Context())
	defer stopB()
	go func() {
		bDone <- runElected(bCtx, fast("b"), api.DefaultNamespace, cs, rec, nil, j.serve("b", bStarted))
	}()
	// b has seen the lease held by a at least once: its observed record is a's, renewed while it waits.
	if got := holder(t, cs); got != "a" {
		t.Fatalf("lease held by %q, want a", got)
	}
	stopA()
	select {
	case err := <-aDone:
		if err != nil {
			t.Fatalf("a after a clean shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a did not return")
	}
	// Released: b takes over well before the lease would have expired had a died.
	within(t, bStarted, 5*time.Second, "b leads")
	if got, want := j.snapshot(), []string{"a start", "a stop", "b start"}; !slices.Equal(got, want) {
		t.Errorf("journal %q, want %q", got, want)
	}
	if got := holder(t, cs); got != "b" {
		t.Errorf("lease held by %q, want b", got)
	}
	stopB()
	if err := <-bDone; err != nil {
		t.Errorf("b: %v", err)
	}
}

// A leader that cannot renew its lease stops serving and says so: its run returns ErrLeaseLost.
func TestLeaderThatLosesTheLeaseStops(t *testing.T) {
	cs := fake.NewClientset()
	var failRenewals atomic.Bool
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failRenewals.Load() {
			return true, nil, apierrors.NewServiceUnavailable("host apiserver down")
		}
		return false, nil, nil
	})
	cs.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failRenewals.Load() {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, api.LeaderElectionLease)
		}
		return false, nil, nil
	})
	started := make(chan struct{})
	stopped := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runElected(t.Context(), fast("a"), api.DefaultNamespace, cs, record.NewFakeRecorder(100), nil, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			close(stopped)
			return nil
		})
	}()
	within(t, started, 5*time.Second, "a leads")
	failRenewals.Store(true)
	within(t, stopped, 5*time.Second, "serving stops once renewals fail past the renew deadline")
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseLost) {
			t.Errorf("run returned %v, want ErrLeaseLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return")
	}
}

// A standby asked to stop before it ever led returns nil and served nothing.
func TestStandbyStopsCleanly(t *testing.T) {
	cs := fake.NewClientset()
	aStarted := make(chan struct{})
	var j journal
	go func() {
		_ = runElected(t.Context(), fast("a"), api.DefaultNamespace, cs, record.NewFakeRecorder(100), nil, j.serve("a", aStarted))
	}()
	within(t, aStarted, 5*time.Second, "a leads")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- runElected(ctx, fast("b"), api.DefaultNamespace, cs, record.NewFakeRecorder(100), nil, j.serve("b", make(chan struct{})))
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("standby: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("standby did not return")
	}
	if got, want := j.snapshot(), []string{"a start"}; !slices.Equal(got, want) {
		t.Errorf("journal %q, want %q", got, want)
	}
}

// A leader whose elector hangs (a Lease update that never returns) keeps believing it leads: /healthz on the
// metrics address fails once the lease is past its duration and the tolerance, so that the kubelet restarts it.
func TestHealthzFailsWhenTheLeaderStopsRenewing(t *testing.T) {
	cs := fake.NewClientset()
	var hang atomic.Bool
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if hang.Load() {
			<-t.Context().Done()
			return true, nil, t.Context().Err()
		}
		return false, nil, nil
	})
	reg, _, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	watchdog := leaderelection.NewLeaderHealthzAdaptor(100 * time.Millisecond)
	srv := httptest.NewServer(metricsHandler(reg, healthz.PingHealthz, watchdog))
	defer srv.Close()
	status := func() int {
		resp, err := srv.Client().Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Fatalf("/healthz before the election: %d, want 200", got)
	}
	started := make(chan struct{})
	go func() {
		_ = runElected(t.Context(), fast("a"), api.DefaultNamespace, cs, record.NewFakeRecorder(100), watchdog, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return nil
		})
	}()
	within(t, started, 5*time.Second, "a leads")
	if got := status(); got != http.StatusOK {
		t.Fatalf("/healthz of a renewing leader: %d, want 200", got)
	}
	hang.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for status() != http.StatusInternalServerError {
		if time.Now().After(deadline) {
			t.Fatal("/healthz still passes 10 s after the leader stopped renewing (lease 1 s, tolerance 100 ms)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
