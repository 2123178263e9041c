package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/internal/cli"
	"github.com/tetherkube/tether/webhook"
)

// NewCommand is tether-webhook's command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:           "tether-webhook",
		Short:         "Park pods' scheduling fields so that the host picks a member and the member picks the node",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			selector, ips, err := o.Validate()
			if err != nil {
				return err
			}
			ctx, err := cli.WithLogger(cmd.Context(), o.LogLevel)
			if err != nil {
				return err
			}
			return Run(ctx, o, selector, ips)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// Run serves the webhook until ctx ends, with the options Validate accepted.
func Run(ctx context.Context, o *Options, selector *metav1.LabelSelector, ips []net.IP) error {

	skip := []string{metav1.NamespaceSystem, o.Namespace}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hostLevel := api.NewHostLevel(o.NodePrefix, o.KeepLabelKeys)
	mutateOpts := webhook.Options{HostLevel: hostLevel, TolerationSeconds: o.TolerationSeconds, SchedulerName: o.SchedulerName}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	var certs *webhook.Certs
	var client kubernetes.Interface
	if o.TLSCertFile == "" || o.ManageWebhookConfiguration || o.AvoidConfigMap != "" {
		cfg, err := cli.HostConfig(o.Kubeconfig)
		if err != nil {
			return err
		}
		cfg.UserAgent = "tether-webhook"
		if client, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
	}
	if o.AvoidConfigMap != "" {
		// The descheduler's avoid record, from informers; until they have synced, pods avoid nothing.
		avoid := webhook.NewAvoidRecord(client, o.Namespace, o.AvoidConfigMap)
		avoid.Start(ctx)
		mutateOpts.Avoid = avoid.Members
	}
	handler, err := webhook.NewHandler(mutateOpts, skip, reg)
	if err != nil {
		return err
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
