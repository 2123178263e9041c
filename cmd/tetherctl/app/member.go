package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/registry"
)

// hostOptions are the flags that name the host cluster and Tether's names in it (join, leave, status).
type hostOptions struct {
	kubeconfig string
	context    string
	namespace  string
	nodePrefix string
	clusterID  string
}

func (o *hostOptions) addFlags(cmd *cobra.Command, withClusterID bool) {
	fs := cmd.Flags()
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the host cluster (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.context, "context", "", "context of --kubeconfig to use for the host (default: its current context)")
	fs.StringVarP(&o.namespace, "namespace", "n", api.DefaultNamespace, "Tether's namespace in the host, where member Secrets live (tether-node's --namespace)")
	fs.StringVar(&o.nodePrefix, api.FlagNodePrefix, api.DefaultNodePrefix, "virtual nodes are named <prefix><member> (tether-node's --"+api.FlagNodePrefix+")")
	if withClusterID {
		fs.StringVar(&o.clusterID, "cluster-id", "", "name of the host cluster in ownership labels, as tether-node's --cluster-id (default: UID of the host's kube-system namespace)")
	}
	_ = cmd.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return kubeconfigContexts(o.kubeconfig, true), cobra.ShellCompDirectiveNoFileComp
	})
}

// config follows kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context, else the current one.
func (o *hostOptions) config() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("host cluster (--kubeconfig, $KUBECONFIG or ~/.kube/config): %w", err)
	}
	cfg.UserAgent = "tetherctl"
	return cfg, nil
}

func (o *hostOptions) client() (kubernetes.Interface, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// resolveClusterID is --cluster-id, or what tether-node takes by default: the UID of the host's kube-system.
func (o *hostOptions) resolveClusterID(ctx context.Context, host kubernetes.Interface) (string, error) {
	if o.clusterID != "" {
		return o.clusterID, nil
	}
	ns, err := host.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the host's kube-system namespace for the cluster id (or give --cluster-id): %w", err)
	}
	return string(ns.UID), nil
}

// memberOptions say how tetherctl reaches a member with rights to manage RBAC there: a kubeconfig (and context), or
// an API address, a bearer token and the CA.
type memberOptions struct {
	kubeconfig string
	context    string
	apiServer  string
	token      string
	caFile     string
}

func (o *memberOptions) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.kubeconfig, "member-kubeconfig", "", "kubeconfig of the member cluster, with an identity allowed to create namespaces, ServiceAccounts, Secrets and RBAC there (or use --api-server, --token and --ca-file)")
	fs.StringVar(&o.context, "member-context", "", "context of --member-kubeconfig (default: its current context)")
	fs.StringVar(&o.apiServer, "api-server", "", "address of the member's apiserver, https://HOST:PORT (with --token and --ca-file, instead of --member-kubeconfig)")
	fs.StringVar(&o.token, "token", "", "bearer token of an identity allowed to manage RBAC in the member (with --api-server); used for this command only, never stored")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file of the CA that signs the member apiserver's certificate (with --api-server)")
	_ = cmd.RegisterFlagCompletionFunc("member-context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return kubeconfigContexts(o.kubeconfig, false), cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.RegisterFlagCompletionFunc("ca-file", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"pem", "crt"}, cobra.ShellCompDirectiveFilterFileExt
	})
	_ = cmd.RegisterFlagCompletionFunc("api-server", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("token", cobra.NoFileCompletions)
}

// validate reports every misuse of the member flags at once.
func (o *memberOptions) validate() error {
	var errs []error
	byAddress := o.apiServer != "" || o.token != "" || o.caFile != ""
	switch {
	case o.kubeconfig != "" && byAddress:
		errs = append(errs, errors.New("give either --member-kubeconfig or --api-server, --token and --ca-file, not both"))
	case o.kubeconfig == "" && !byAddress:
		errs = append(errs, errors.New("say how to reach the member: --member-kubeconfig, or --api-server, --token and --ca-file"))
	case byAddress:
		if o.apiServer == "" {
			errs = append(errs, errors.New("--api-server is required with --token and --ca-file"))
		}
		if o.token == "" {
			errs = append(errs, errors.New("--token is required with --api-server"))
		}
		if o.caFile == "" {
			errs = append(errs, errors.New("--ca-file is required with --api-server (the member's CA; tetherctl never skips TLS verification)"))
		}
	}
	if o.context != "" && o.kubeconfig == "" {
		errs = append(errs, errors.New("--member-context needs --member-kubeconfig"))
	}
	return errors.Join(errs...)
}

// endpoint is where a member's apiserver is and the CA that signs its certificate: what identifies a member cluster.
type endpoint struct {
	Server     string
	CA         []byte
	ServerName string
}

func (e endpoint) same(o endpoint) bool {
	return e.Server == o.Server && bytes.Equal(bytes.TrimSpace(e.CA), bytes.TrimSpace(o.CA))
}

// config is the member's rest config for tetherctl (the operator's identity), and its endpoint.
func (o *memberOptions) config() (*rest.Config, endpoint, error) {
	if err := o.validate(); err != nil {
		return nil, endpoint{}, err
	}
	var cfg *rest.Config
	if o.kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("--member-kubeconfig: %w", err)
		}
		cfg = c
	} else {
		ca, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("--ca-file: %w", err)
		}
		cfg = &rest.Config{Host: o.apiServer, BearerToken: o.token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	}
	if cfg.Insecure {
		return nil, endpoint{}, errors.New("the member kubeconfig skips TLS verification: tetherctl needs the member's CA, which it also gives tether-node")
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("member CA: %w", err)
		}
		ca = b
	}
	cfg.UserAgent = "tetherctl"
	return cfg, endpoint{Server: cfg.Host, CA: ca, ServerName: cfg.ServerName}, nil
}

// kubeconfigContexts lists the contexts of a kubeconfig for shell completion (host: kubectl's loading rules when
// path is empty).
func kubeconfigContexts(path string, defaults bool) []string {
	if path == "" && !defaults {
		return nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := rules.Load()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(cfg.Contexts))
	for name := range cfg.Contexts {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// memberKubeconfig is the kubeconfig of a member Secret: server, CA and tether-node's token inline, nothing else
// (what provider/registry accepts).
func memberKubeconfig(member string, ep endpoint, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[member] = &clientcmdapi.Cluster{Server: ep.Server, CertificateAuthorityData: ep.CA, TLSServerName: ep.ServerName}
	cfg.AuthInfos[api.MemberIdentity] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[member] = &clientcmdapi.Context{Cluster: member, AuthInfo: api.MemberIdentity}
	cfg.CurrentContext = member
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	if _, err := registry.ParseMemberKubeconfig(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// endpointOfSecret reads the endpoint a member Secret points at.
func endpointOfSecret(s *corev1.Secret) (endpoint, error) {
	cfg, err := clientcmd.Load(s.Data[api.MemberSecretKubeconfig])
	if err != nil {
		return endpoint{}, fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	if kctx == nil || cfg.Clusters[kctx.Cluster] == nil {
		return endpoint{}, fmt.Errorf("secret %s/%s: kubeconfig has no current cluster", s.Namespace, s.Name)
	}
	c := cfg.Clusters[kctx.Cluster]
	return endpoint{Server: c.Server, CA: c.CertificateAuthorityData, ServerName: c.TLSServerName}, nil
}

// memberSecrets lists the host's member Secrets in namespace.
func memberSecrets(ctx context.Context, host kubernetes.Interface, namespace string) ([]corev1.Secret, error) {
	l, err := host.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: api.MemberSelector})
	if err != nil {
		return nil, fmt.Errorf("list member Secrets in %s: %w", namespace, err)
	}
	return l.Items, nil
}

// tetherctlWrote reports whether s is a member Secret that tetherctl join writes for member.
func tetherctlWrote(s *corev1.Secret, member string) bool {
	return s.Name == api.MemberSecretName(member) && s.Labels[api.LabelManagedBy] == api.ManagedByTether
}

// completeMembers completes member names from the host's member Secrets.
func completeMembers(o *hostOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		host, err := o.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		secrets, err := memberSecrets(ctx, host, o.namespace)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for i := range secrets {
			names = append(names, api.MemberOfSecret(&secrets[i]))
		}
		sort.Strings(names)
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// clusters are what join and leave work on: both clients, the member's endpoint and the host's cluster id.
type clusters struct {
	host, member kubernetes.Interface
	endpoint     endpoint
	clusterID    string
}

// connect checks the member name, the timeout and the member flags (every problem at once), then connects to both
// clusters.
func connect(ctx context.Context, name string, timeout time.Duration, h *hostOptions, m *memberOptions) (clusters, error) {
	var errs []error
	if err := registry.ValidateMemberName(name, h.nodePrefix); err != nil {
		errs = append(errs, err)
	}
	if timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: must be positive", timeout))
	}
	mcfg, ep, err := m.config()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return clusters{}, err
	}
	member, err := kubernetes.NewForConfig(mcfg)
	if err != nil {
		return clusters{}, fmt.Errorf("member client: %w", err)
	}
	host, err := h.client()
	if err != nil {
		return clusters{}, err
	}
	clusterID, err := h.resolveClusterID(ctx, host)
	if err != nil {
		return clusters{}, err
	}
	return clusters{host: host, member: member, endpoint: ep, clusterID: clusterID}, nil
}
