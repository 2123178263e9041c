package kubelet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// signer approves and signs every CertificateSigningRequest as it is created, with the given lifetime, as an
// administrator and the controller manager would.
type signer struct {
	t        *testing.T
	ca       *x509.Certificate
	key      *ecdsa.PrivateKey
	lifetime time.Duration
	mu       sync.Mutex
	requests []*x509.CertificateRequest
}

func newSigner(t *testing.T, lifetime time.Duration) *signer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{t: t, ca: ca, key: key, lifetime: lifetime}
}

func (s *signer) react(action k8stesting.Action) (bool, runtime.Object, error) {
	csr := action.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
	block, _ := pem.Decode(csr.Spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return true, nil, err
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	n := len(s.requests)
	s.mu.Unlock()
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(int64(n + 1)), Subject: req.Subject, IPAddresses: req.IPAddresses, DNSNames: req.DNSNames,
		NotBefore: now, NotAfter: now.Add(s.lifetime), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, s.ca, req.PublicKey, s.key)
	if err != nil {
		return true, nil, err
	}
	// The fake clientset neither generates names nor UIDs.
	csr.Name, csr.UID = fmt.Sprintf("csr-%d", n), types.UID(fmt.Sprintf("uid-%d", n))
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return false, nil, nil // the tracker stores the signed request
}

// onlyNamed makes the fake clientset honour the field selector metadata.name=… on CSR lists and watches, which
// the certificate manager uses to wait for its request.
func onlyNamed(client *fake.Clientset) {
	gvr := certificatesv1.SchemeGroupVersion.WithResource("certificatesigningrequests")
	gvk := certificatesv1.SchemeGroupVersion.WithKind("CertificateSigningRequest")
	named := func(fs fields.Selector) string {
		if fs == nil {
			return ""
		}
		name, _ := fs.RequiresExactMatch("metadata.name")
		return name
	}
	client.PrependReactor("list", "certificatesigningrequests", func(action k8stesting.Action) (bool, runtime.Object, error) {
		name := named(action.(k8stesting.ListAction).GetListRestrictions().Fields)
		obj, err := client.Tracker().List(gvr, gvk, "")
		if err != nil || name == "" {
			return true, obj, err
		}
		list := obj.(*certificatesv1.CertificateSigningRequestList)
		kept := list.Items[:0]
		for _, csr := range list.Items {
			if csr.Name == name {
				kept = append(kept, csr)
			}
		}
		list.Items = kept
		return true, list, nil
	})
	client.PrependWatchReactor("certificatesigningrequests", func(action k8stesting.Action) (bool, watch.Interface, error) {
		name := named(action.(k8stesting.WatchAction).GetWatchRestrictions().Fields)
		w, err := client.Tracker().Watch(gvr, "")
		if err != nil || name == "" {
			return true, w, err
		}
		return true, watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
			csr, ok := e.Object.(*certificatesv1.CertificateSigningRequest)
			return e, ok && csr.Name == name
		}), nil
	})
}

func (s *signer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// The serving certificate is requested for the node's subject and addresses, kept in the Secret, and renewed
// when 70–90 % of its lifetime has passed (10 s here), not earlier and not again and again.
func TestServingCertificateIsRequestedStoredAndRotated(t *testing.T) {
	client := fake.NewClientset()
	s := newSigner(t, 10*time.Second)
	client.PrependReactor("create", "certificatesigningrequests", s.react)
	onlyNamed(client)
	get, err := startCSRManager(t.Context(), CSRConfig{Client: client, Name: "tether-node", IPs: []net.IP{net.IPv4(10, 0, 0, 7)},
		Namespace: "tether-system", Secret: "serving"})
	if err != nil {
		t.Fatal(err)
	}
	var first *x509.Certificate
	poll := func(what string, cond func() (bool, error)) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			return cond()
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	poll("a first certificate", func() (bool, error) {
		c, err := get(nil)
		if err != nil {
			return false, nil
		}
		first = c.Leaf
		return true, nil
	})
	if first.Subject.CommonName != "system:node:tether-node" || len(first.Subject.Organization) != 1 || first.Subject.Organization[0] != "system:nodes" ||
		len(first.IPAddresses) != 1 || !first.IPAddresses[0].Equal(net.IPv4(10, 0, 0, 7)) {
		t.Errorf("certificate for %v %v", first.Subject, first.IPAddresses)
	}
	sec, err := client.CoreV1().Secrets("tether-system").Get(t.Context(), "serving", metav1.GetOptions{})
	if err != nil || sec.Type != corev1.SecretTypeTLS || len(sec.Data[corev1.TLSPrivateKeyKey]) == 0 {
		t.Fatalf("the certificate is not kept in its Secret: %v", err)
	}
	var renewed *x509.Certificate
	poll("a renewed certificate", func() (bool, error) {
		c, err := get(nil)
		if err == nil && c.Leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = c.Leaf
		}
		return renewed != nil, nil
	})
	// x509 times have whole seconds: 7 s after the first, less one for rounding
	if age := renewed.NotBefore.Sub(first.NotBefore); age < 6*time.Second {
		t.Errorf("renewed %s after the first certificate, want 70–90 %% of its 10 s", age)
	}
	if n := s.count(); n != 2 {
		t.Errorf("%d requests, want 2: the first and one renewal", n)
	}
}
