package memberfit

import (
	"fmt"

	"github.com/tetherkube/tether/api"
)

// Validate reports every problem of args at once, by the same rule as the flags of tether-node and tether-webhook.
func Validate(args Args) error {
	if err := api.NewHostLevel(args.NodePrefix, args.KeepLabelKeys).Validate(); err != nil {
		return fmt.Errorf("%s args: %w", Name, err)
	}
	return nil
}
