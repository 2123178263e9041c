// Command tether-scheduler is kube-scheduler with Tether's MemberFit plugin (docs/scheduler.md).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/tetherkube/tether/scheduler/plugins/memberfit"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(memberfit.Name, memberfit.New))
	os.Exit(cli.Run(cmd))
}
