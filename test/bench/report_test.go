package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSummarizeW1AndEvaluate(t *testing.T) {
	w := &w1Result{Runs: []*burstResult{
		{Kind: kindTether, N: 1000, Throughput: 40, TetherCPUSeconds: 10, e2e: ms(1000, 3000)},
		{Kind: kindVanilla, N: 1000, Throughput: 100, e2e: ms(500, 1500)},
		{Kind: kindTether, N: 1000, Throughput: 60, TetherCPUSeconds: 20, e2e: ms(2000, 2500)},
		{Kind: kindVanilla, N: 1000, Throughput: 100, e2e: ms(1000, 1200)},
	}}
	summarizeW1(w)
	if w.Efficiency != 0.5 {
		t.Errorf("efficiency = %v, want 0.5 (median 50 / median 100)", w.Efficiency)
	}
	if w.AddedP99 != 1500*time.Millisecond {
		t.Errorf("added p99 = %v, want 1.5s (3s − 1.5s over pooled pods)", w.AddedP99)
	}
	if w.TetherCPUPer1000 != 15 {
		t.Errorf("cpu per 1000 = %v, want 15", w.TetherCPUPer1000)
	}
	w.Accounting = &accounting{N: 1000, TetherHost: apiTotals{HostStatusWrites: 2.5}, TetherMembers: apiTotals{MemberPodCreates: 1}}
	r := &result{Settings: settings{N: 1000}, W1: w,
		W2: &scaleResult{Steps: []scaleStep{{Pods: 0}, {Pods: 10000}}, RSSPer1000: 10 << 20},
		W3: &restartResult{Converged: 12 * time.Second, MemberWrites: 0},
		W6: &w6Result{BoundRatio: 0.95, AllRunning: map[string]time.Duration{kindDefaultScheduler: 15 * time.Second, kindTetherScheduler: 16 * time.Second},
			Share: map[string]float64{kindTetherScheduler: 0.5}}}
	verdicts := map[string]bool{}
	for _, tg := range evaluate(r) {
		if tg.Met == nil {
			t.Errorf("%s: not measured", tg.Name)
			continue
		}
		verdicts[tg.Name] = *tg.Met
	}
	want := map[string]bool{
		"efficiency": true, "added p99": false, "member creates per offloaded pod": true,
		"host status writes per offloaded pod": false, "LISTs by tether-node during the burst": true,
		"RSS per 1,000 pods": true, "restart converged": true, "member writes during the restart": true,
		"tether-scheduler bound/s vs default": true, "tether-scheduler all Running vs default": false,
		"tether-scheduler emptier member's share": true,
	}
	for k, v := range want {
		if verdicts[k] != v {
			t.Errorf("%s: met = %v, want %v", k, verdicts[k], v)
		}
	}
	var out bytes.Buffer
	r.Targets = evaluate(r)
	printResults(&out, r)
	if !strings.Contains(out.String(), "MISSED") || !strings.Contains(out.String(), "efficiency   0.50") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestEvaluateNotMeasured(t *testing.T) {
	for _, tg := range evaluate(&result{}) {
		if tg.Met != nil || tg.Value != "not measured" {
			t.Errorf("%s: %+v, want not measured", tg.Name, tg)
		}
	}
}
