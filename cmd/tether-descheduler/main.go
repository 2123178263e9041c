// Command tether-descheduler is the upstream descheduler with Tether's plugins: pods that their member cannot
// place are evicted so that another member can take them.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"github.com/tetherkube/tether/cmd/tether-descheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewCommand(os.Stdout)))
}
