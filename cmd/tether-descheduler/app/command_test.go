package app

import (
	"io"
	"testing"

	"sigs.k8s.io/descheduler/pkg/framework/pluginregistry"
	"sigs.k8s.io/descheduler/pkg/framework/plugins/defaultevictor"
	"sigs.k8s.io/descheduler/pkg/framework/plugins/podlifetime"

	"github.com/tetherkube/tether/descheduler/plugins/memberunschedulable"
)

// The upstream PreRunE resets the registry: Tether's plugin must be there after it, beside the upstream ones.
func TestPreRunERegistersPlugins(t *testing.T) {
	pluginregistry.PluginRegistry = pluginregistry.NewRegistry()
	cmd := NewCommand(io.Discard)
	if err := cmd.PreRunE(cmd, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{memberunschedulable.PluginName, defaultevictor.PluginName, podlifetime.PluginName} {
		if _, ok := pluginregistry.PluginRegistry[name]; !ok {
			t.Errorf("plugin %s not registered after PreRunE", name)
		}
	}
	u := pluginregistry.PluginRegistry[memberunschedulable.PluginName]
	if _, ok := u.PluginArgInstance.(*memberunschedulable.MemberUnschedulableArgs); !ok || u.PluginArgDefaulter == nil || u.PluginArgValidator == nil {
		t.Errorf("registration %+v", u)
	}
	for _, flag := range []string{"descheduling-interval", "dry-run", "policy-config-file", "leader-elect"} {
		if cmd.Flags().Lookup(flag) == nil {
			t.Errorf("upstream flag --%s missing", flag)
		}
	}
}
