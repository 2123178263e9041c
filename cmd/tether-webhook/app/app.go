// Package app is tether-webhook's command: flags, TLS, the webhook configuration and the HTTPS server.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/cli"
	"github.com/tetherkube/tether/webhook"
)

// Options are tether-webhook's flags.
type Options struct {
	Kubeconfig                 string
	ListenAddress              string
	HealthAddress              string
	TLSCertFile, TLSKeyFile    string
	Namespace                  string
	TLSSecretName              string
	DNSNames                   []string
	IPAddresses                []string
	ManageWebhookConfiguration bool
	ConfigurationName          string
	URL                        string
	ServiceName                string
	ServicePort                int32
	NamespaceSelector          string
	FailurePolicy              string
	TimeoutSeconds             int32
	KeepLabelKeys              []string
	NodePrefix                 string
	TolerationSeconds          int64
	LogLevel                   string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		ListenAddress:     ":9443",
		HealthAddress:     ":8081",
		Namespace:         api.DefaultNamespace,
		TLSSecretName:     "tether-webhook-tls",
		ConfigurationName: "tether-webhook",
		ServiceName:       "tether-webhook",
		ServicePort:       443,
		NamespaceSelector: api.DefaultOffloadSelector,
		FailurePolicy:     "Ignore",
		TimeoutSeconds:    5,
		NodePrefix:        api.DefaultNodePrefix,
		TolerationSeconds: 300,
		LogLevel:          "info",
	}
}

// AddFlags registers every option.
func (o *Options) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the host cluster (default: in-cluster config, then $KUBECONFIG); needed for a generated certificate and --manage-webhook-configuration")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress, "HTTPS address of the webhook (path /mutate)")
	fs.StringVar(&o.HealthAddress, "health-address", o.HealthAddress, "HTTP address of /healthz, /readyz and /metrics")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "serving certificate; with --tls-private-key-file, replaces the generated one")
	fs.StringVar(&o.TLSKeyFile, "tls-private-key-file", o.TLSKeyFile, "key of --tls-cert-file")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Tether's namespace: holds the generated certificate's Secret, never mutated")
	fs.StringVar(&o.TLSSecretName, "tls-secret-name", o.TLSSecretName, "Secret of the generated CA and serving certificate (shared by replicas)")
	fs.StringSliceVar(&o.DNSNames, "dns-names", o.DNSNames, "DNS names of the generated certificate (default: <service>.<namespace>.svc)")
	fs.StringSliceVar(&o.IPAddresses, "ip-addresses", o.IPAddresses, "IP addresses of the generated certificate")
	fs.BoolVar(&o.ManageWebhookConfiguration, "manage-webhook-configuration", o.ManageWebhookConfiguration, "create the MutatingWebhookConfiguration and keep it (CA bundle included) up to date")
	fs.StringVar(&o.ConfigurationName, "webhook-configuration-name", o.ConfigurationName, "name of the MutatingWebhookConfiguration")
	fs.StringVar(&o.URL, "url", o.URL, "URL the host apiserver calls (https://host:port/mutate); default: the Service --service-name")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "Service in --namespace in front of the webhook")
	fs.Int32Var(&o.ServicePort, "service-port", o.ServicePort, "port of that Service")
	fs.StringVar(&o.NamespaceSelector, "namespace-selector", o.NamespaceSelector, "label selector of the namespaces whose pods are offloaded")
	fs.StringVar(&o.FailurePolicy, "failure-policy", o.FailurePolicy, "Ignore: pods are created unchanged (not offloaded) while the webhook is down; Fail: they are refused")
	fs.Int32Var(&o.TimeoutSeconds, "timeout-seconds", o.TimeoutSeconds, "how long the apiserver waits for the webhook (1-30)")
	fs.StringSliceVar(&o.KeepLabelKeys, "keep-label-keys", o.KeepLabelKeys, "label keys that describe virtual nodes, in addition to tether.io/member, type and kubernetes.io/hostname (same flag as tether-node)")
	fs.StringVar(&o.NodePrefix, "node-prefix", o.NodePrefix, "virtual nodes are named <prefix><member>")
	fs.Int64Var(&o.TolerationSeconds, "toleration-seconds", o.TolerationSeconds, "how long offloaded pods tolerate their virtual node being not-ready or unreachable")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: debug, info, warn, error")
}

// NewCommand is tether-webhook's command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:           "tether-webhook",
		Short:         "Park pods' scheduling fields so that the host picks a member and the member picks the node",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return Run(cmd.Context(), o) },
	}
	o.AddFlags(cmd)
	return cmd
}

// validate checks every option at once.
func (o *Options) validate() (*metav1.LabelSelector, []net.IP, error) {
	var errs []error
	sel, err := metav1.ParseToLabelSelector(o.NamespaceSelector)
	if err != nil {
		errs = append(errs, fmt.Errorf("--namespace-selector %q: %w", o.NamespaceSelector, err))
	}
	var ips []net.IP
	for _, s := range o.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			errs = append(errs, fmt.Errorf("--ip-addresses: %q is not an IP address", s))
		}
		ips = append(ips, ip)
	}
	if !slices.Contains([]string{"Ignore", "Fail"}, o.FailurePolicy) {
		errs = append(errs, fmt.Errorf("--failure-policy %q: want Ignore or Fail", o.FailurePolicy))
	}
	if o.TimeoutSeconds < 1 || o.TimeoutSeconds > 30 {
		errs = append(errs, fmt.Errorf("--timeout-seconds %d: want 1 to 30", o.TimeoutSeconds))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file go together"))
	}
	if o.TolerationSeconds < 0 {
		errs = append(errs, errors.New("--toleration-seconds must not be negative"))
	}
	if _, err := logrus.ParseLevel(o.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	return sel, ips, errors.Join(errs...)
}

// Run serves the webhook until ctx ends.
func Run(ctx context.Context, o *Options) error {
	selector, ips, err := o.validate()
	if err != nil {
		return err
	}
	if ctx, err = cli.WithLogger(ctx, o.LogLevel); err != nil {
		return err
	}

	skip := []string{metav1.NamespaceSystem, o.Namespace}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hostLevel := api.NewHostLevel(o.NodePrefix, o.KeepLabelKeys)
	handler, err := webhook.NewHandler(webhook.Options{HostLevel: hostLevel, TolerationSeconds: o.TolerationSeconds}, skip, reg)
	if err != nil {
		return err
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	var certs *webhook.Certs
	var client kubernetes.Interface
	if o.TLSCertFile == "" || o.ManageWebhookConfiguration {
		cfg, err := cli.HostConfig(o.Kubeconfig)
		if err != nil {
			return err
		}
		cfg.UserAgent = "tether-webhook"
		if client, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
	}
	var caBundle func() []byte
	if o.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert-file: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{pair}
		caBundle = func() []byte { return nil } // the configuration's bundle is the operator's business
	} else {
		dns := o.DNSNames
		if len(dns) == 0 {
			dns = []string{o.ServiceName + "." + o.Namespace + ".svc"}
		}
		certs = &webhook.Certs{Client: client, Namespace: o.Namespace, SecretName: o.TLSSecretName, DNSNames: dns, IPs: ips,
			Validity: 365 * 24 * time.Hour, RenewBefore: 30 * 24 * time.Hour}
		if err := certs.Ensure(ctx); err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
		tlsConfig.GetCertificate = certs.GetCertificate
		caBundle = certs.CABundle
	}
	confOpts := webhook.ConfigurationOptions{
		Name: o.ConfigurationName, URL: o.URL,
		Service:           &admissionregistrationv1.ServiceReference{Namespace: o.Namespace, Name: o.ServiceName, Path: ptrTo("/mutate"), Port: ptrTo(o.ServicePort)},
		NamespaceSelector: selector, SkipNamespaces: skip,
		FailurePolicy: admissionregistrationv1.FailurePolicyType(o.FailurePolicy), TimeoutSeconds: o.TimeoutSeconds,
	}
	// maintain keeps the certificate fresh and the configuration in step with it.
	maintain := func(ctx context.Context) {
		if certs != nil {
			if err := certs.Ensure(ctx); err != nil {
				log.G(ctx).WithError(err).Error("renew serving certificate")
			}
		}
		if o.ManageWebhookConfiguration {
			if err := webhook.EnsureConfiguration(ctx, client, confOpts, caBundle()); err != nil {
				log.G(ctx).WithError(err).Error("webhook configuration")
			}
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/mutate", handler)
	srv := &http.Server{Addr: o.ListenAddress, Handler: mux, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return fmt.Errorf("--listen-address: %w", err)
	}
	health := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	health.HandleFunc("/healthz", ok)
	health.HandleFunc("/readyz", ok)
	health.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hsrv := &http.Server{Addr: o.HealthAddress, Handler: health, ReadHeaderTimeout: 10 * time.Second}
	hln, err := net.Listen("tcp", o.HealthAddress)
	if err != nil {
		ln.Close()
		return fmt.Errorf("--health-address: %w", err)
	}

	errs := make(chan error, 2)
	go func() { errs <- srv.ServeTLS(ln, "", "") }()
	go func() { errs <- hsrv.Serve(hln) }()
	maintain(ctx) // after the listener is up, so that the apiserver can call as soon as the configuration exists
	log.G(ctx).WithField("address", ln.Addr().String()).Info("tether-webhook serving")
	ticker := time.NewTicker(time.Hour)
	defer ticker.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			runErr = err
			break loop
		case <-ticker.C:
			maintain(ctx)
		}
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	_ = hsrv.Shutdown(shutdown)
	if errors.Is(runErr, http.ErrServerClosed) {
		return nil
	}
	return runErr
}

func ptrTo[T any](v T) *T { return &v }
