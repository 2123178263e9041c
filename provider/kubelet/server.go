package kubelet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
)

// ServerConfig configures the kubelet API listener.
type ServerConfig struct {
	// CertFile and KeyFile are the serving certificate; CSR requests one from the host instead; with neither, a
	// self-signed one for SelfSignedIPs.
	CertFile, KeyFile string
	CSR               *CSRConfig
	SelfSignedIPs     []net.IP
	// ClientCAFile verifies client certificates (the host apiserver's kubelet client certificate is signed by it).
	ClientCAFile string
	// Anonymous lets requests without credentials through as system:anonymous (still authorized).
	Anonymous bool
	// HostClient runs TokenReviews and SubjectAccessReviews on the host.
	HostClient kubernetes.Interface
	// NodeOf names the virtual node of a host pod, for authorization.
	NodeOf func(namespace, pod string) string
	Relay  *Relay
}

// Server is the kubelet API of every virtual node: one handler, served on one or more addresses (a virtual node
// may have a port of its own so that its node-level endpoints are its alone).
type Server struct {
	handler http.Handler
	tls     *tls.Config
}

// NewServer prepares the kubelet API. Every request but /healthz is authenticated (client certificate or bearer
// token through TokenReview) and authorized (SubjectAccessReview on the node's proxy, log, stats or metrics
// subresource, like a kubelet): 401 without credentials, 403 when not allowed. With cfg.CSR, the serving
// certificate is requested and rotated until ctx ends.
func NewServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	switch {
	case cfg.CertFile != "":
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet serving certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	case cfg.CSR != nil:
		get, err := startCSRManager(ctx, *cfg.CSR)
		if err != nil {
			return nil, err
		}
		tlsCfg.GetCertificate = get
	default:
		pair, err := selfSigned(cfg.SelfSignedIPs)
		if err != nil {
			return nil, err
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	auth, err := nodeutil.WebhookAuth(cfg.HostClient, "", func(c *nodeutil.WebhookAuthConfig) error {
		c.AuthnConfig.Anonymous = &apiserver.AnonymousAuthConfig{Enabled: cfg.Anonymous}
		if cfg.ClientCAFile != "" {
			ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", cfg.ClientCAFile)
			if err != nil {
				return fmt.Errorf("--client-ca-file: %w", err)
			}
			c.AuthnConfig.ClientCertificateCAContentProvider = ca
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cfg.Anonymous {
		log.G(ctx).Warn("kubelet API: anonymous requests are enabled (still authorized as system:anonymous)")
	}
	pods := api.PodHandler(cfg.Relay.Handlers(), false)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.Handle("/", nodeutil.WithAuth(podAuth{Auth: auth, nodeOf: cfg.NodeOf, nodesOn: cfg.Relay.Router.MembersOn}, pods))
	return &Server{handler: mux, tls: tlsCfg}, nil
}

// Serve serves the kubelet API on address until ctx ends.
func (s *Server) Serve(ctx context.Context, address string) error {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("kubelet API listener: %w", err)
	}
	srv := &http.Server{Handler: s.handler, TLSConfig: s.tls, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 1)
	go func() { errs <- srv.ServeTLS(ln, "", "") }()
	log.G(ctx).WithField("address", ln.Addr().String()).Info("kubelet API serving")
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	case err := <-errs:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// podAuth authorizes a pod request against the pod's own virtual node, and a node-level request against the
// virtual node published on the port it came in on.
type podAuth struct {
	nodeutil.Auth
	nodeOf  func(namespace, pod string) string
	nodesOn func(port int32) []*Member
}

// podPaths are the kubelet API paths of the form /<kind>/<namespace>/<pod>/….
var podPaths = []string{"containerLogs", "exec", "attach", "portForward", "run"}

func (a podAuth) GetRequestAttributes(u user.Info, r *http.Request) authorizer.Attributes {
	node := ""
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) >= 3 && slices.Contains(podPaths, parts[0]) && a.nodeOf != nil {
		node = a.nodeOf(parts[1], parts[2])
	} else if node == "" && a.nodesOn != nil {
		node = a.nodeOnPort(r)
	}
	return nodeutil.NodeRequestAttr{NodeName: node}.GetRequestAttributes(u, r)
}

// nodeOnPort names the virtual node published on the port r came in on. When several share the port, the answer
// covers them all, and so must the caller's permission: "" asks for the resource on every node.
func (a podAuth) nodeOnPort(r *http.Request) string {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if !ok {
		return ""
	}
	if ms := a.nodesOn(int32(addr.Port)); len(ms) == 1 {
		return ms[0].NodeName
	}
	return ""
}

// selfSigned makes a serving certificate for the given addresses. The host apiserver does not verify kubelet
// serving certificates unless told to (--kubelet-certificate-authority); with that flag, use files instead.
func selfSigned(ips []net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "tether-node"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips, DNSNames: []string{"tether-node"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
