package memberunschedulable

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Decisions, the values of the decision label of tether_descheduler_member_unschedulable_total.
const (
	DecisionEvicted     = "evicted"
	DecisionNoMemberFit = "skipped_no_member_fits"
	DecisionPDB         = "skipped_pdb"
	DecisionLimit       = "skipped_limit"
	DecisionError       = "error"
)

// decisions counts what the plugin decided for pods stuck in their member. It is served by the descheduler's own
// /metrics (component-base's legacy registry, where the upstream descheduler registers its metrics).
var decisions = metrics.NewCounterVec(&metrics.CounterOpts{
	Namespace:      "tether",
	Subsystem:      "descheduler",
	Name:           "member_unschedulable_total",
	Help:           "Pods unschedulable in their member, by decision (evicted, skipped_no_member_fits, skipped_pdb, skipped_limit, error) and member.",
	StabilityLevel: metrics.ALPHA,
}, []string{"decision", "member"})

var registerOnce sync.Once

// registerMetrics registers the plugin's metrics once per process (the plugin may be built more than once: per
// profile, and twice in a dry run).
func registerMetrics() {
	registerOnce.Do(func() {
		// Register fails only for a collector registered twice, which the Once rules out.
		_ = legacyregistry.Register(decisions)
	})
}
