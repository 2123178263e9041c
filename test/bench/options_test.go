package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, args ...string) (*options, error) {
	t.Helper()
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o, o.validate()
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Workloads, []string{"w1", "w2", "w3", "w4", "w5", "w6"}) || o.N != 1000 || o.Pairs != 2 || o.ConfigMaps != 1000 {
		t.Errorf("defaults: %+v", o)
	}
	if !slices.Equal(o.ScaleSteps, []int{1000, 5000, 10000}) {
		t.Errorf("scale steps = %v", o.ScaleSteps)
	}
	// tether-node's own defaults, passed explicitly.
	args := strings.Join(o.Tether.args(), " ")
	for _, want := range []string{"--host-qps 500", "--queue-qps 1000", "--pod-workers 20"} {
		if !strings.Contains(args, want) {
			t.Errorf("tether-node args %q lack %q", args, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o, err := parse(t, "-workloads", "w2", "-scale-pods", "2000", "-scale-steps", "1500,500,500", "-idle-window", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.ScaleSteps, []int{500, 1500, 2000}) || o.IdleWindow != 5*time.Second {
		t.Errorf("steps %v, idle %v: want sorted, unique, -scale-pods last", o.ScaleSteps, o.IdleWindow)
	}
	_, err = parse(t, "-workloads", "w1,w7", "-n", "1", "-pairs", "0", "-scale-pods", "500", "-configmaps", "0")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`unknown "w7"`, "-n:", "-pairs:", "-scale-steps: 1000", "-configmaps:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := parse(t, "-workloads", "w2", "-scale-pods", "20000"); err == nil || !strings.Contains(err.Error(), "holds only 12000") {
		t.Errorf("a scale beyond the member's capacity must be refused, got %v", err)
	}
}
