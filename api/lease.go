package api

import "time"

// tether-node's high availability and metrics endpoint. Two or more replicas run with --leader-elect: they hold a
// coordination.k8s.io/v1 Lease of this name in Tether's host namespace (DefaultNamespace), and only its holder
// serves the virtual nodes; the others wait. The chart and tools that watch the leader rely on the name.
const (
	// LeaderElectionLease names the Lease the replicas of tether-node elect their leader with
	// (--leader-elect-resource-name); its spec.holderIdentity is the leader's identity.
	LeaderElectionLease = "tether-node"
	// DefaultLeaseDuration is how long a standby waits after the last renewal it saw before it takes the lease
	// (--leader-elect-lease-duration); with DefaultRetryPeriod it bounds a takeover after the leader's death.
	DefaultLeaseDuration = 10 * time.Second
	// DefaultRenewDeadline is how long the leader keeps trying to renew before it stops serving
	// (--leader-elect-renew-deadline). Shorter than DefaultLeaseDuration, so that a leader cut off from the
	// host stops before a standby may start.
	DefaultRenewDeadline = 7 * time.Second
	// DefaultRetryPeriod is the interval between two tries to take or renew the lease (--leader-elect-retry-period).
	DefaultRetryPeriod = 2 * time.Second
	// LeaseJitterFactor is client-go's: the renew deadline must exceed the retry period times this.
	LeaseJitterFactor = 1.2
	// DefaultMetricsPort is the port of tether-node's Prometheus /metrics (--metrics-address :10256).
	DefaultMetricsPort = 10256
)
