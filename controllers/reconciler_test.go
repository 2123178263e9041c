package controllers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReconcilerRetriesAndResyncs(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	calls := map[string]int{}
	synced := make(chan string, 100)
	r := New(func(_ context.Context, key string) error {
		mu.Lock()
		calls[key]++
		n := calls[key]
		mu.Unlock()
		if key == "flaky" && n < 3 {
			return errors.New("not yet")
		}
		synced <- key
		return nil
	}, Options{Name: "test", Member: "m1", Keys: func() []string { return []string{"periodic"} }, Resync: 20 * time.Millisecond})
	done := make(chan struct{})
	go func() { r.Run(ctx, 2); close(done) }()
	r.Enqueue("flaky")
	seen := map[string]bool{}
	for deadline := time.After(10 * time.Second); !seen["flaky"] || !seen["periodic"]; {
		select {
		case k := <-synced:
			seen[k] = true
		case <-deadline:
			t.Fatalf("synced %v: want flaky (after two failures) and periodic", seen)
		}
	}
	mu.Lock()
	if calls["flaky"] != 3 {
		t.Errorf("flaky synced %d times, want 3", calls["flaky"])
	}
	mu.Unlock()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// The periodic pass reports how many of its keys are in sync and how many fail.
func TestReconcilerCountsObjects(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := New(func(_ context.Context, key string) error {
		if key == "bad" {
			return errors.New("refused")
		}
		return nil
	}, Options{Name: "test", Member: "m1", Keys: func() []string { return []string{"good", "bad", "also-good"} },
		Resync: 10 * time.Millisecond, Metrics: m})
	go r.Run(t.Context(), 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		inSync := testutil.ToFloat64(m.objects.WithLabelValues("test", "m1", "in_sync"))
		failing := testutil.ToFloat64(m.objects.WithLabelValues("test", "m1", "failing"))
		if inSync == 2 && failing == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in_sync %v, failing %v: want 2 and 1", inSync, failing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
