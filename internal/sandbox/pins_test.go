package sandbox

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// modLine is a require or replace line of a go.mod: "mod version" or "mod => mod version".
var modLine = regexp.MustCompile(`(?m)^\s*(\S+)(?: => \S+)? (v\S+)(?: // indirect)?$`)

// versions reads the require and replace lines of a go.mod; a replace wins over a require.
func versions(t *testing.T, path string) (required, replaced map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	required, replaced = map[string]string{}, map[string]string{}
	for _, m := range modLine.FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[0], "=>") {
			replaced[m[1]] = m[2]
		} else {
			required[m[1]] = m[2]
		}
	}
	return required, replaced
}

// TestSchedulerSharesControlPlanePins: the scheduler module (scheduler/) builds k8s.io/kubernetes with exactly the
// module versions the control-plane pin (hack/tools/kubernetes) builds it with, so that both share one build cache
// (a cold CI run compiles kube-scheduler once). A module the scheduler uses at another version fails here.
func TestSchedulerSharesControlPlanePins(t *testing.T) {
	root := filepath.Join("..", "..")
	pinReq, pinRep := versions(t, filepath.Join(root, "hack", "tools", "kubernetes", "go.mod"))
	schedReq, schedRep := versions(t, filepath.Join(root, "scheduler", "go.mod"))
	want := func(mod string) string {
		if v, ok := pinRep[mod]; ok {
			return v
		}
		return pinReq[mod]
	}
	checked := 0
	for mod, v := range schedReq {
		pin := want(mod)
		if pin == "" {
			continue // the scheduler's own (the main module, its test helpers)
		}
		got := v
		if r, ok := schedRep[mod]; ok {
			got = r
		}
		if got != pin {
			t.Errorf("scheduler/go.mod builds %s %s, hack/tools/kubernetes %s: hold it there with a replace line", mod, got, pin)
		}
		checked++
	}
	if checked < 100 {
		t.Errorf("only %d shared modules found: is scheduler/go.mod's layout what this test reads?", checked)
	}
}
