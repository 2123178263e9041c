package kubelet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/certificate"

	"github.com/tetherkube/tether/api"
)

// CSRConfig asks the host for the kubelet API's serving certificate: a CertificateSigningRequest for signer
// kubernetes.io/kubelet-serving, which nobody approves automatically (an administrator runs `kubectl certificate
// approve`, or an approver controller does). The certificate is kept in a Secret, so a restart reuses it, and is
// renewed with a new CSR when 70–90 % of its lifetime has passed.
type CSRConfig struct {
	Client kubernetes.Interface
	// CommonName is the certificate's subject, system:node:<Name>: the signer only signs node names.
	Name      string
	IPs       []net.IP
	DNSNames  []string
	Namespace string
	Secret    string
	// Lifetime is the requested lifetime (spec.expirationSeconds); the signer may shorten it. Zero: the signer's.
	Lifetime time.Duration
}

// CSRSecretKeys are the keys of the Secret that holds the current serving certificate.
const (
	csrCertKey = corev1.TLSCertKey
	csrKeyKey  = corev1.TLSPrivateKeyKey
)

// startCSRManager starts client-go's certificate manager (what kubelets use) until ctx ends and returns the
// GetCertificate of the TLS listener. Until the first certificate is issued, handshakes fail with a clear error.
func startCSRManager(ctx context.Context, cfg CSRConfig) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if len(cfg.IPs) == 0 && len(cfg.DNSNames) == 0 {
		return nil, errors.New("kubelet serving certificate by CSR: no IP address or DNS name to certify")
	}
	mcfg := &certificate.Config{
		ClientsetFn: func(*tls.Certificate) (kubernetes.Interface, error) { return cfg.Client, nil },
		Template: &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: "system:node:" + cfg.Name, Organization: []string{"system:nodes"}},
			IPAddresses: cfg.IPs,
			DNSNames:    cfg.DNSNames,
		},
		SignerName:       certificatesv1.KubeletServingSignerName,
		Usages:           []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		CertificateStore: &secretStore{ctx: ctx, client: cfg.Client, namespace: cfg.Namespace, name: cfg.Secret},
		Name:             "kubelet-serving",
		Ctx:              &ctx,
	}
	if cfg.Lifetime > 0 {
		mcfg.RequestedCertificateLifetime = &cfg.Lifetime
	}
	m, err := certificate.NewManager(mcfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet serving certificate manager: %w", err)
	}
	m.Start()
	go func() {
		<-ctx.Done()
		m.Stop()
	}()
	log.G(ctx).WithField("signer", certificatesv1.KubeletServingSignerName).WithField("secret", cfg.Namespace+"/"+cfg.Secret).
		Info("kubelet API: serving certificate from a CertificateSigningRequest (approve it: kubectl certificate approve)")
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := m.Current(); c != nil {
			return c, nil
		}
		return nil, errors.New("no serving certificate yet: waiting for the approval of tether-node's CertificateSigningRequest")
	}, nil
}

// secretStore keeps the certificate manager's current pair in a host Secret (type kubernetes.io/tls).
type secretStore struct {
	ctx             context.Context
	client          kubernetes.Interface
	namespace, name string
}

var _ certificate.Store = (*secretStore)(nil)

func (s *secretStore) Current() (*tls.Certificate, error) {
	sec, err := s.client.CoreV1().Secrets(s.namespace).Get(s.ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, noCert(fmt.Sprintf("no Secret %s/%s yet", s.namespace, s.name))
	}
	if err != nil {
		return nil, err
	}
	if len(sec.Data[csrCertKey]) == 0 {
		return nil, noCert(fmt.Sprintf("Secret %s/%s holds no certificate", s.namespace, s.name))
	}
	return parsePair(sec.Data[csrCertKey], sec.Data[csrKeyKey])
}

func (s *secretStore) Update(cert, key []byte) (*tls.Certificate, error) {
	pair, err := parsePair(cert, key)
	if err != nil {
		return nil, err
	}
	secrets := s.client.CoreV1().Secrets(s.namespace)
	data := map[string][]byte{csrCertKey: cert, csrKeyKey: key}
	sec, err := secrets.Get(s.ctx, s.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(s.ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace,
				Labels: api.ManagedLabels()},
			Type: corev1.SecretTypeTLS, Data: data,
		}, metav1.CreateOptions{})
	case err == nil:
		sec = sec.DeepCopy()
		sec.Data = data
		_, err = secrets.Update(s.ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("store the kubelet serving certificate in %s/%s: %w", s.namespace, s.name, err)
	}
	return pair, nil
}

// noCert tells the certificate manager to request a first certificate.
func noCert(msg string) error {
	e := certificate.NoCertKeyError(msg)
	return &e
}

func parsePair(cert, key []byte) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	return &pair, nil
}
