package sandbox

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// modLine is a require or replace line of a go.mod: "mod version", "mod => mod version" or "replace mod => mod version".
var modLine = regexp.MustCompile(`(?m)^\s*(?:replace )?(\S+)(?: => \S+)? (v\S+)(?: // indirect)?$`)

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
	sharesPins(t, filepath.Join("..", "..", "scheduler", "go.mod"), 100, "hold it there with a replace line")
}

// TestMainSharesControlPlanePins: the main module requires every module it shares with the control-plane pin at
// the pin's version (client-go, apimachinery, grpc, x/net, …), so that the binaries, the tests, the scheduler
// module and the control plane, etcd, kwok and the metrics-server built from the pin compile each of them once.
func TestMainSharesControlPlanePins(t *testing.T) {
	sharesPins(t, filepath.Join("..", "..", "go.mod"), 50, "require the pin's version (or raise the pin, then the scheduler module)")
}

// TestHelmSharesControlPlanePins: helm, helm-unittest and helm-docs (hack/tools/helm) are built with the pin's
// versions too, so that `make chart-test` compiles little more than helm itself.
func TestHelmSharesControlPlanePins(t *testing.T) {
	sharesPins(t, filepath.Join("..", "..", "hack", "tools", "helm", "go.mod"), 50, "require the pin's version, or raise the pin (then the main and scheduler modules)")
}

// sharesPins fails for every module the go.mod at path requires (or replaces) at another version than
// hack/tools/kubernetes does; min is how many shared modules a go.mod of that layout has at least.
func sharesPins(t *testing.T, path string, minShared int, fix string) {
	t.Helper()
	pinReq, pinRep := versions(t, filepath.Join("..", "..", "hack", "tools", "kubernetes", "go.mod"))
	req, rep := versions(t, path)
	want := func(mod string) string {
		if v, ok := pinRep[mod]; ok {
			return v
		}
		return pinReq[mod]
	}
	checked := 0
	for mod, v := range req {
		pin := want(mod)
		if pin == "" {
			continue // not built by the pin (the module's own dependencies, test helpers)
		}
		got := v
		if r, ok := rep[mod]; ok {
			got = r
		}
		if got != pin {
			t.Errorf("%s builds %s %s, hack/tools/kubernetes %s: %s", path, mod, got, pin, fix)
		}
		checked++
	}
	if checked < minShared {
		t.Errorf("only %d modules shared with the pin found in %s: is its layout what this test reads?", checked, path)
	}
}
