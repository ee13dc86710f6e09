package kms

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/devpki"
)

// TestTLSKeyInAHandshake: a local-kms key signs a certificate request and then, as the key of
// the certificate a CA issued for it, the client side of real TLS 1.2 and 1.3 handshakes with a
// server that requires and verifies client certificates.
func TestTLSKeyInAHandshake(t *testing.T) {
	c := localClient(t)
	id, _ := createKey(t, c)
	pub, err := PublicKeyOf(t.Context(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewTLSKey(c, id, pub)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ccf"}}, key)
	if err != nil {
		t.Fatalf("a CSR signed in KMS: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("the CSR does not verify: %v", err)
	}
	ca, err := devpki.NewCA("test CCF CA")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf,
		SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}

	serverCert, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		var cn string
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
			MinVersion: version, MaxVersion: version}
		srv.StartTLS()
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }}}}
		resp, err := client.Get(srv.URL)
		srv.Close()
		if err != nil {
			t.Fatalf("TLS %x with the KMS key: %v", version, err)
		}
		_ = resp.Body.Close()
		if cn != "ccf" {
			t.Errorf("TLS %x: the server saw %q", version, cn)
		}
	}

	// Anything but a SHA-256 digest is refused before KMS is asked.
	d := sha256.Sum256([]byte("x"))
	if _, err := key.Sign(rand.Reader, d[:], crypto.SHA384); err == nil {
		t.Error("signed with SHA-384 options")
	}
	if _, err := key.Sign(rand.Reader, d[:16], crypto.SHA256); err == nil {
		t.Error("signed a short digest")
	}
}
