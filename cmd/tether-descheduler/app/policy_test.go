package app

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/descheduler/pkg/descheduler"
	"sigs.k8s.io/descheduler/pkg/framework/pluginregistry"

	"github.com/tetherkube/tether/descheduler/plugins/memberunschedulable"
	"github.com/tetherkube/tether/internal/sandbox"
)

// The sandbox's policy (the README's) decodes strictly, with the plugin's arguments typed and defaulted.
func TestSandboxPolicyDecodes(t *testing.T) {
	registry := pluginregistry.NewRegistry()
	descheduler.RegisterDefaultPlugins(registry)
	RegisterPlugins(registry)
	pluginregistry.PluginRegistry = registry // the policy's conversion reads the global registry
	for _, tt := range []struct {
		policy          string
		wantAvoid, wait time.Duration
	}{
		{sandbox.DeschedulerPolicy(), memberunschedulable.DefaultAvoidFor, 30 * time.Second},
		{sandbox.DemoDeschedulerPolicy(), memberunschedulable.DefaultAvoidFor, 10 * time.Second},
		{sandbox.DeschedulerPolicy("avoidFor: 40s", "unschedulableFor: 10s"), 40 * time.Second, 10 * time.Second},
	} {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(path, []byte(tt.policy), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := descheduler.LoadPolicyConfig(path, fake.NewClientset(), registry)
		if err != nil {
			t.Fatalf("%v\n%s", err, tt.policy)
		}
		var args *memberunschedulable.MemberUnschedulableArgs
		for _, c := range p.Profiles[0].PluginConfigs {
			if c.Name == memberunschedulable.PluginName {
				args, _ = c.Args.(*memberunschedulable.MemberUnschedulableArgs)
			}
		}
		if args == nil || args.AvoidFor == nil || args.AvoidFor.Duration != tt.wantAvoid || args.UnschedulableFor == nil || args.UnschedulableFor.Duration != tt.wait {
			t.Errorf("args %+v, want avoidFor %s, unschedulableFor %s", args, tt.wantAvoid, tt.wait)
		}
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(sandbox.DeschedulerPolicy("unschedulablefor: 10s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := descheduler.LoadPolicyConfig(path, fake.NewClientset(), registry); err == nil {
		t.Error("a misspelt argument is accepted")
	}
}
