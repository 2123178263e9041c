package registry

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	members       prometheus.Gauge
	startFailures *prometheus.CounterVec
	notSynced     *prometheus.CounterVec
	invalid       *prometheus.CounterVec
	statusDelay   *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_node_members",
			Help: "Members this tether-node serves (running or waiting to be started again).",
		}),
		startFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_node_member_failures_total",
			Help: "Times a member's virtual node failed to start or stopped on an error, and is started again with backoff.",
		}, []string{"member"}),
		notSynced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_node_member_not_synced_total",
			Help: "Starts of a member whose caches had not synced within the start timeout (member unreachable?).",
		}, []string{"member"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_node_member_secret_invalid_total",
			Help: "Member Secrets refused (invalid name, kubeconfig or port annotation).",
		}, []string{"member"}),
		statusDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tether_node_pod_status_delay_seconds",
			Help:    "From a member pod event with a new status to the end of the host status write that carries it: tether-node's own part of the member → host status lag.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"member"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.members, m.startFailures, m.notSynced, m.invalid, m.statusDelay} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
