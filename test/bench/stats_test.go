package main

import (
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1 // 1..100 ms
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100 of 1..100", ms(hundred...), 1, 100 * time.Millisecond},
		{"p90 of four rounds up", ms(1, 2, 3, 4), 0.9, 4 * time.Millisecond},
		{"p50 of four", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestSummarizeSortsAndKeepsInput(t *testing.T) {
	in := ms(30, 10, 20)
	got := summarize(in)
	want := latency{Count: 3, P50: 20 * time.Millisecond, P90: 30 * time.Millisecond, P99: 30 * time.Millisecond, Max: 30 * time.Millisecond}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if in[0] != 30*time.Millisecond {
		t.Error("summarize sorted its input")
	}
}

func TestWindowThroughput(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	// 100 completions, one every 10 ms, but a slow tail: the last 5 come 10 s later.
	var done []time.Time
	for i := range 95 {
		done = append(done, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	for i := range 5 {
		done = append(done, t0.Add(10*time.Second+time.Duration(i)*time.Millisecond))
	}
	// 10 % = the 10th completion (index 9, 90 ms), 90 % = the 90th (index 89, 890 ms): 80 completions in 0.8 s.
	if got := windowThroughput(done, 0.1, 0.9); got < 99.9 || got > 100.1 {
		t.Errorf("windowThroughput = %v, want 100 (the tail is outside the window)", got)
	}
	// Order does not matter.
	rev := make([]time.Time, len(done))
	for i := range done {
		rev[len(done)-1-i] = done[i]
	}
	if got := windowThroughput(rev, 0.1, 0.9); got < 99.9 || got > 100.1 {
		t.Errorf("windowThroughput of reversed = %v, want 100", got)
	}
	if got := windowThroughput(done[:1], 0.1, 0.9); got != 0 {
		t.Errorf("one completion: %v, want 0", got)
	}
	same := []time.Time{t0, t0, t0}
	if got := windowThroughput(same, 0.1, 0.9); got != 0 {
		t.Errorf("no duration: %v, want 0", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{4, 1}, 2.5}, {[]float64{5, 1, 3}, 3}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
