package registry

import (
	"context"
	"errors"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tetherkube/tether/api"
)

type metrics struct {
	members         prometheus.Gauge
	startFailures   *prometheus.CounterVec
	notSynced       *prometheus.CounterVec
	invalid         *prometheus.CounterVec
	statusDelay     *prometheus.HistogramVec
	createDelay     *prometheus.HistogramVec
	reconcileErrors *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
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
		createDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tether_node_pod_create_delay_seconds",
			Help:    "From a host pod's binding to the virtual node (its PodScheduled condition, else its creation; whole seconds, so up to 1 s more) to the end of the member pod's create.",
			Buckets: []float64{.25, .5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120},
		}, []string{"member"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_node_reconcile_errors_total",
			Help: "Failed syncs of the pod path (pod controller and repair pass), retried, by member and reason: the API status reason (Conflict, Forbidden, AlreadyExists, NotFound, TooManyRequests, …), Timeout, Network or Other.",
		}, []string{"member", "reason"}),
	}
}

// register adds the metrics and the collector of r's state to reg.
func (m *metrics) register(reg prometheus.Registerer, r *Registry) error {
	for _, c := range []prometheus.Collector{m.members, m.startFailures, m.notSynced, m.invalid, m.statusDelay, m.createDelay,
		m.reconcileErrors, stateCollector{r}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// errorReason is a bounded label value for a sync error.
func errorReason(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case apierrors.ReasonForError(err) != metav1.StatusReasonUnknown:
		return string(apierrors.ReasonForError(err))
	case errdefs.IsNotFound(err):
		return string(metav1.StatusReasonNotFound)
	case errors.As(err, &netErr):
		return "Network"
	}
	return "Other"
}

var (
	memberUpDesc = prometheus.NewDesc("tether_node_member_up",
		"1 while a member's virtual node runs and its last health probe (/readyz) succeeded, else 0; one series per member this tether-node serves.",
		[]string{"member"}, nil)
	podsDesc = prometheus.NewDesc("tether_node_pods",
		"Host pods bound to a member's virtual node, by member and phase, counted from the host pod cache at scrape time.",
		[]string{"member", "phase"}, nil)
	podPhases = []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}
)

// stateCollector reports member health and pods per phase from what the registry and the caches hold at scrape
// time: nothing is counted per pod in between.
type stateCollector struct{ r *Registry }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- memberUpDesc
	ch <- podsDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	type member struct {
		name string
		up   bool
	}
	var members []member
	byNode := map[string]string{} // virtual node → member
	r.mu.Lock()
	for name, run := range r.members {
		m := run.member.Load()
		members = append(members, member{name, run.serving.Load() != nil && m != nil && m.Reachable()})
		byNode[api.NodeName(r.cfg.Node.NodePrefix, name)] = name
	}
	r.mu.Unlock()
	for _, m := range members {
		up := 0.0
		if m.up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(memberUpDesc, prometheus.GaugeValue, up, m.name)
	}
	if len(members) == 0 {
		return
	}
	counts := map[string]map[corev1.PodPhase]int{}
	for _, m := range members {
		counts[m.name] = map[corev1.PodPhase]int{}
	}
	pods, err := r.cfg.HostPods.Lister().List(labels.Everything())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(podsDesc, err)
		return
	}
	for _, p := range pods {
		if member, ok := byNode[p.Spec.NodeName]; ok {
			phase := p.Status.Phase
			if phase == "" {
				phase = corev1.PodPending
			}
			counts[member][phase]++
		}
	}
	for member, byPhase := range counts {
		for _, phase := range podPhases {
			ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(byPhase[phase]), member, string(phase))
		}
	}
}
