package webhook

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestCertsIssueReuseRenew(t *testing.T) {
	client := fake.NewClientset()
	newCerts := func(validity, renewBefore time.Duration) *Certs {
		return &Certs{Client: client, Namespace: "tether-system", SecretName: "tls", DNSNames: []string{"tether-webhook.tether-system.svc"},
			IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: validity, RenewBefore: renewBefore}
	}
	c := newCerts(24*time.Hour, 0)
	if err := c.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	first, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CABundle()) {
		t.Fatal("CA bundle is not PEM")
	}
	if _, err := first.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("serving certificate does not verify against the bundle: %v", err)
	}

	// A second replica (or a restart) uses the same certificate.
	other := newCerts(24*time.Hour, 0)
	if err := other.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if second, _ := other.GetCertificate(nil); !second.Leaf.Equal(first.Leaf) {
		t.Error("a second Ensure made a new certificate instead of reusing the Secret's")
	}

	// Due for renewal (a day left, renewed a month before the end): a new serving certificate, same CA.
	renewing := newCerts(365*24*time.Hour, 30*24*time.Hour)
	if err := renewing.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	renewed, _ := renewing.GetCertificate(nil)
	if renewed.Leaf.Equal(first.Leaf) {
		t.Error("not renewed")
	}
	if string(renewing.CABundle()) != string(c.CABundle()) {
		t.Error("renewal changed the CA: the webhook configuration's bundle would be stale")
	}
	s, err := client.CoreV1().Secrets("tether-system").Get(t.Context(), "tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatal("secret holds no certificate")
	}
}
