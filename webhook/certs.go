package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keys of the TLS Secret: the serving pair under the usual names, and the CA that signed it.
const (
	secretCACert = "ca.crt"
	secretCAKey  = "ca.key"
)

// Certs keeps a serving certificate that tether-webhook makes itself: a CA and a serving certificate it signs,
// stored in a Secret so that every replica serves the same one, renewed (same CA) before it expires.
type Certs struct {
	Client     kubernetes.Interface
	Namespace  string
	SecretName string
	DNSNames   []string
	IPs        []net.IP
	// Validity of a serving certificate, and how long before its end it is renewed.
	Validity, RenewBefore time.Duration

	cert atomic.Pointer[tls.Certificate]
	ca   atomic.Pointer[[]byte]
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cert.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New("no serving certificate yet")
}

// CABundle is the PEM of the CA that signed the serving certificate.
func (c *Certs) CABundle() []byte {
	if b := c.ca.Load(); b != nil {
		return *b
	}
	return nil
}

// Ensure loads the certificate from the Secret, making or renewing it first when it is missing, invalid or due.
func (c *Certs) Ensure(ctx context.Context) error {
	secrets := c.Client.CoreV1().Secrets(c.Namespace)
	s, err := secrets.Get(ctx, c.SecretName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read secret %s/%s: %w", c.Namespace, c.SecretName, err)
	}
	found := err == nil
	if !found {
		s = nil
	} else if cert, ok := c.usable(s); ok {
		c.store(s, cert)
		return nil
	}
	data, err := c.issue(s)
	if err != nil {
		return err
	}
	if !found {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: c.SecretName, Namespace: c.Namespace}, Type: corev1.SecretTypeTLS, Data: data}
		created, cerr := secrets.Create(ctx, s, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(cerr) {
			return c.Ensure(ctx) // another replica was first: use its certificate
		}
		if cerr != nil {
			return fmt.Errorf("create secret %s/%s: %w", c.Namespace, c.SecretName, cerr)
		}
		s = created
	} else {
		s = s.DeepCopy()
		s.Data = data
		updated, uerr := secrets.Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(uerr) {
			return c.Ensure(ctx)
		}
		if uerr != nil {
			return fmt.Errorf("update secret %s/%s: %w", c.Namespace, c.SecretName, uerr)
		}
		s = updated
	}
	cert, ok := c.usable(s)
	if !ok {
		return errors.New("the certificate just made is not usable")
	}
	c.store(s, cert)
	return nil
}

func (c *Certs) store(s *corev1.Secret, cert *tls.Certificate) {
	c.cert.Store(cert)
	ca := append([]byte(nil), s.Data[secretCACert]...)
	c.ca.Store(&ca)
}

// usable parses the Secret's pair and reports whether it names our hosts and is not due for renewal.
func (c *Certs) usable(s *corev1.Secret) (*tls.Certificate, bool) {
	cert, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil || len(s.Data[secretCACert]) == 0 {
		return nil, false
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || time.Until(leaf.NotAfter) < c.RenewBefore {
		return nil, false
	}
	for _, d := range c.DNSNames {
		if leaf.VerifyHostname(d) != nil {
			return nil, false
		}
	}
	for _, ip := range c.IPs {
		if leaf.VerifyHostname(ip.String()) != nil {
			return nil, false
		}
	}
	cert.Leaf = leaf
	return &cert, true
}

// issue signs a new serving certificate, with the Secret's CA when it has a valid one, else with a new CA.
func (c *Certs) issue(s *corev1.Secret) (map[string][]byte, error) {
	now := time.Now()
	var ca *x509.Certificate
	var caKey *ecdsa.PrivateKey
	var caPEM, caKeyPEM []byte
	if s != nil {
		caPEM, caKeyPEM = s.Data[secretCACert], s.Data[secretCAKey]
		if pair, err := tls.X509KeyPair(caPEM, caKeyPEM); err == nil {
			if parsed, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && time.Until(parsed.NotAfter) > c.Validity {
				if k, ok := pair.PrivateKey.(*ecdsa.PrivateKey); ok {
					ca, caKey = parsed, k
				}
			}
		}
	}
	if ca == nil {
		var err error
		caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "tether-webhook-ca"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		if ca, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		kb, err := x509.MarshalECPrivateKey(caKey)
		if err != nil {
			return nil, err
		}
		caKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := "tether-webhook"
	if len(c.DNSNames) > 0 {
		cn = c.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(c.Validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: c.DNSNames, IPAddresses: c.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		secretCACert:            caPEM,
		secretCAKey:             caKeyPEM,
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62)) // crypto/rand does not fail on Linux
	return n
}
