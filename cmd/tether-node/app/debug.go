package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/tools/metrics"
)

// newMetrics builds the one Prometheus registry of the process: the Go runtime and process collectors,
// tether_node_leader, and tether_node_api_requests_total and tether_node_api_request_duration_seconds, every
// request tether-node's clients make (watches aside) by apiserver, verb and resource. The member registry adds
// its own. It returns the registry and the leader gauge. Call it once per process: client-go's request hook is
// global.
func newMetrics() (*prometheus.Registry, prometheus.Gauge, error) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_node_api_requests_total",
		Help: "Requests tether-node's clients made (watches aside), by apiserver (host:port), verb and resource.",
	}, []string{"host", "verb", "resource"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tether_node_api_request_duration_seconds",
		Help:    "Latency of the requests tether-node's clients made (watches aside), by apiserver (host:port), verb and resource.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"host", "verb", "resource"})
	leader := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tether_node_leader",
		Help: "1 while this replica serves the virtual nodes (it holds the leader Lease, or runs without --leader-elect), 0 while it waits as a standby.",
	})
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		requests, latency, leader} {
		if err := reg.Register(c); err != nil {
			return nil, nil, err
		}
	}
	metrics.Register(metrics.RegisterOpts{RequestLatency: requestCounter{requests, latency}})
	return reg, leader, nil
}

// serveMetrics serves Prometheus metrics under /metrics and the health checks under /healthz (and
// /healthz/<check>, as Kubernetes components do) on addr until ctx ends. It has no authentication: the metrics carry
// member names and counts, no secret.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, checks ...healthz.HealthChecker) error {
	return serveHTTP(ctx, addr, "/metrics and /healthz", metricsHandler(reg, checks...))
}

// metricsHandler is what serveMetrics serves.
func metricsHandler(reg *prometheus.Registry, checks ...healthz.HealthChecker) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	healthz.InstallHandler(mux, checks...)
	return mux
}

// serveDebug serves net/http/pprof under /debug/pprof/ on addr until ctx ends, and the same /metrics as
// --metrics-address (the benchmarks read both from one address). It is for benchmarks and profiling: it has no
// authentication, so bind it to loopback.
func serveDebug(ctx context.Context, addr string, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveHTTP(ctx, addr, "/metrics and /debug/pprof/", mux)
}

// serveHTTP listens on addr at once (so that a taken port fails the start) and serves h until ctx ends.
func serveHTTP(ctx context.Context, addr, what string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).WithField("address", addr).Error("HTTP server stopped")
		}
	}()
	log.G(ctx).WithField("address", ln.Addr().String()).Info("serving " + what)
	return nil
}

// requestCounter counts client-go requests from its latency hook, which sees the verb and the URL template.
type requestCounter struct {
	c *prometheus.CounterVec
	h *prometheus.HistogramVec
}

func (r requestCounter) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	labels := []string{u.Host, requestVerb(verb, u.Path), requestResource(u.Path)}
	r.c.WithLabelValues(labels...).Inc()
	r.h.WithLabelValues(labels...).Observe(d.Seconds())
}

// requestVerb tells a LIST from a GET: client-go's URL template names a single object {name}.
func requestVerb(method, path string) string {
	if method == http.MethodGet && strings.HasPrefix(path, "/api") && !strings.Contains(path, "{name}") {
		return "LIST"
	}
	return method
}

// requestResource is the resource (and subresource) of a client-go URL template such as
// /api/v1/namespaces/{namespace}/pods/{name}/status → pods/status; non-resource paths (/readyz) stay as they are.
func requestResource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && parts[1] == "{namespace}" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return path
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}
