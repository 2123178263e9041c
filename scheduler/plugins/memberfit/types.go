package memberfit

// Args are MemberFit's arguments in a KubeSchedulerConfiguration's pluginConfig. They have the meaning of
// tether-node's and tether-webhook's flags of the same names, and must be set to the same values.
type Args struct {
	// NodePrefix names virtual nodes: <nodePrefix><member> (--node-prefix; default tether-).
	NodePrefix string `json:"nodePrefix"`
	// KeepLabelKeys are host-level label keys besides the default ones (--keep-label-keys).
	KeepLabelKeys []string `json:"keepLabelKeys"`
}
