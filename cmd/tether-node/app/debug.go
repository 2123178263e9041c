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
	"k8s.io/client-go/tools/metrics"
)

// serveDebug serves net/http/pprof under /debug/pprof/ and Prometheus metrics under /metrics on addr until ctx
// ends: the Go runtime and process collectors, and tether_node_api_requests_total and
// tether_node_api_request_duration_seconds, every request tether-node's clients make (watches aside) by apiserver,
// verb and resource, besides what reg holds (the member registry's metrics). It is for benchmarks and profiling: it has no
// authentication, so bind it to loopback.
func serveDebug(ctx context.Context, addr string, reg *prometheus.Registry) error {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_node_api_requests_total",
		Help: "Requests tether-node's clients made (watches aside), by apiserver (host:port), verb and resource.",
	}, []string{"host", "verb", "resource"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tether_node_api_request_duration_seconds",
		Help:    "Latency of the requests tether-node's clients made (watches aside), by apiserver (host:port), verb and resource.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"host", "verb", "resource"})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), requests, latency)
	metrics.Register(metrics.RegisterOpts{RequestLatency: requestCounter{requests, latency}})

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("debug server stopped")
		}
	}()
	log.G(ctx).WithField("address", ln.Addr().String()).Info("serving /metrics and /debug/pprof/")
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
