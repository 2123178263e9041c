// Package app is tether-webhook's command: flags and their validation (options.go), then TLS, the webhook
// configuration and the HTTPS server (run.go).
package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tetherkube/tether/api"
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
	AvoidConfigMap             string
	SchedulerName              string
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
		AvoidConfigMap:    api.DefaultAvoidConfigMap,
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
	fs.StringSliceVar(&o.KeepLabelKeys, api.FlagKeepLabelKeys, o.KeepLabelKeys, "label keys that describe virtual nodes, in addition to tether.io/member, type and kubernetes.io/hostname (same flag as tether-node)")
	fs.StringVar(&o.NodePrefix, api.FlagNodePrefix, o.NodePrefix, "virtual nodes are named <prefix><member>")
	fs.Int64Var(&o.TolerationSeconds, "toleration-seconds", o.TolerationSeconds, "how long offloaded pods tolerate their virtual node being not-ready or unreachable")
	fs.StringVar(&o.AvoidConfigMap, "avoid-configmap", o.AvoidConfigMap, "ConfigMap in --namespace of tether-descheduler's avoid record: new pods of a controller listed there get a tether.io/member NotIn requirement for the members they avoid (empty: off)")
	fs.StringVar(&o.SchedulerName, "scheduler-name", o.SchedulerName, "give offloaded pods that would go to the default scheduler this schedulerName, e.g. "+api.SchedulerName+" (tether-scheduler's profile); empty: leave it")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: debug, info, warn, error")
}

// Validate checks every option and returns all problems at once, with the parsed namespace selector and IP
// addresses.
func (o *Options) Validate() (*metav1.LabelSelector, []net.IP, error) {
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
	if err := api.NewHostLevel(o.NodePrefix, o.KeepLabelKeys).Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.ServicePort < 1 || o.ServicePort > 65535 {
		errs = append(errs, fmt.Errorf("--service-port %d: out of range", o.ServicePort))
	}
	if o.URL != "" {
		if u, err := url.Parse(o.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--url %q: want https://host[:port]/path", o.URL))
		}
	}
	if o.AvoidConfigMap != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.AvoidConfigMap) {
			errs = append(errs, fmt.Errorf("--avoid-configmap %q: %s", o.AvoidConfigMap, msg))
		}
	}
	if o.SchedulerName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.SchedulerName) {
			errs = append(errs, fmt.Errorf("--scheduler-name %q: %s", o.SchedulerName, msg))
		}
	}
	if _, err := logrus.ParseLevel(o.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	return sel, ips, errors.Join(errs...)
}
