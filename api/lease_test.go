package api

import (
	"testing"
	"time"
)

// The lease defaults are what users and the chart rely on, and they must satisfy client-go's leader election:
// renew deadline < lease duration, retry period × jitter < renew deadline; a standby then takes over a dead
// leader's lease within lease duration + retry period × jitter, inside the 15 s Tether promises.
func TestLeaseDefaults(t *testing.T) {
	if LeaderElectionLease != "tether-node" || DefaultMetricsPort != 10256 {
		t.Errorf("lease %q, metrics port %d", LeaderElectionLease, DefaultMetricsPort)
	}
	if DefaultRenewDeadline >= DefaultLeaseDuration {
		t.Errorf("renew deadline %s not shorter than lease duration %s", DefaultRenewDeadline, DefaultLeaseDuration)
	}
	if jittered := time.Duration(LeaseJitterFactor * float64(DefaultRetryPeriod)); jittered >= DefaultRenewDeadline {
		t.Errorf("retry period × %.1f = %s not shorter than renew deadline %s", LeaseJitterFactor, jittered, DefaultRenewDeadline)
	}
	if worst := DefaultLeaseDuration + time.Duration(LeaseJitterFactor*float64(DefaultRetryPeriod)); worst >= 15*time.Second {
		t.Errorf("worst takeover %s, want under 15 s", worst)
	}
}
