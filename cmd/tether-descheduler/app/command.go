// Package app is tether-descheduler's command: the upstream descheduler command (its flags, policy file, leader
// election, dry run and evictor limits unchanged) with Tether's plugins added to the plugin registry.
package app

import (
	"io"

	"github.com/spf13/cobra"
	deschedulerapp "sigs.k8s.io/descheduler/cmd/descheduler/app"
	"sigs.k8s.io/descheduler/pkg/framework/pluginregistry"

	"github.com/tetherkube/tether/descheduler/plugins/memberunschedulable"
)

// NewCommand is the upstream descheduler command whose PreRunE also registers Tether's plugins. The upstream
// PreRunE resets the registry to the upstream defaults, so ours are registered after it ran: the policy file can
// use upstream and Tether plugins side by side.
func NewCommand(out io.Writer) *cobra.Command {
	cmd := deschedulerapp.NewDeschedulerCommand(out)
	cmd.Use = "tether-descheduler"
	cmd.Short = "Evict pods that their member cluster cannot place, so that another member takes them"
	cmd.Long = cmd.Short + ". The upstream descheduler (sigs.k8s.io/descheduler) with Tether's plugins: " +
		memberunschedulable.PluginName + "."
	upstream := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if upstream != nil {
			if err := upstream(cmd, args); err != nil {
				return err
			}
		}
		RegisterPlugins(pluginregistry.PluginRegistry)
		return nil
	}
	cmd.AddCommand(deschedulerapp.NewVersionCommand())
	return cmd
}

// RegisterPlugins adds Tether's plugins to registry.
func RegisterPlugins(registry pluginregistry.Registry) {
	pluginregistry.Register(memberunschedulable.PluginName, memberunschedulable.New, &memberunschedulable.MemberUnschedulable{},
		&memberunschedulable.MemberUnschedulableArgs{}, memberunschedulable.ValidateMemberUnschedulableArgs,
		memberunschedulable.SetDefaults_MemberUnschedulableArgs, registry)
}
