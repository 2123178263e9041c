package memberfit

import "github.com/tetherkube/tether/api"

// SetDefaults fills what args leave empty.
func SetDefaults(args *Args) {
	if args.NodePrefix == "" {
		args.NodePrefix = api.DefaultNodePrefix
	}
}
