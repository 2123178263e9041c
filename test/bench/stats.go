package main

import (
	"math"
	"slices"
	"time"
)

// latency summarises a set of durations with nearest-rank percentiles.
type latency struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50"`
	P90   time.Duration `json:"p90"`
	P99   time.Duration `json:"p99"`
	Max   time.Duration `json:"max"`
}

func summarize(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return latency{Count: len(s), P50: percentile(s, 0.50), P90: percentile(s, 0.90), P99: percentile(s, 0.99), Max: s[len(s)-1]}
}

// percentile is the nearest-rank percentile (0 < p ≤ 1) of sorted durations: the smallest value that at least
// p of them do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[rank(len(sorted), p)]
}

// rank is the 0-based index of the nearest-rank p-quantile among n sorted values.
func rank(n int, p float64) int {
	i := int(math.Ceil(p*float64(n))) - 1
	return max(0, min(n-1, i))
}

// windowThroughput is the completion rate between the lo and hi fractions of completions (0.1 and 0.9: the
// 10–90 % window), in completions per second: it leaves out the ramp-up and the tail. Zero when the window is
// empty or has no duration.
func windowThroughput(done []time.Time, lo, hi float64) float64 {
	if len(done) < 2 {
		return 0
	}
	s := slices.Clone(done)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	i, j := rank(len(s), lo), rank(len(s), hi)
	d := s[j].Sub(s[i])
	if j <= i || d <= 0 {
		return 0
	}
	return float64(j-i) / d.Seconds()
}

// median of values; zero for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
