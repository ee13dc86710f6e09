package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/devpki"
)

var testNow = time.Now()

// leaf issues a certificate from ca (nil: self-signed) with the template's subject, EKUs and
// validity filled in where left empty.
func leaf(t *testing.T, ca *devpki.CA, tmpl *x509.Certificate) (*x509.Certificate, []byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testNow.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = testNow.Add(time.Hour)
	}
	if tmpl.ExtKeyUsage == nil && !tmpl.IsCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key
}

func newCA(t *testing.T, name string) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestCallerID(t *testing.T) {
	ca := newCA(t, "test CA")
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	tests := []struct {
		name    string
		subject pkix.Name
		want    string // "" for a rejection
	}{
		{"one CN", pkix.Name{CommonName: "inv1"}, "inv1"},
		{"CN with other attributes", pkix.Name{CommonName: "aef-1", Organization: []string{"Org"}, OrganizationalUnit: []string{"inv2"}, Country: []string{"FI"}}, "aef-1"},
		{"CN with spaces and slashes", pkix.Name{CommonName: "a b/c"}, "a b/c"},
		{"CN of 256 bytes", pkix.Name{CommonName: strings.Repeat("c", 256)}, strings.Repeat("c", 256)},
		{"no CN", pkix.Name{Organization: []string{"Org"}}, ""},
		{"empty subject", pkix.Name{}, ""},
		{"two CNs", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "inv1"}, {Type: cn, Value: "aef1"}}}, ""},
		{"the same CN twice", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "inv1"}, {Type: cn, Value: "inv1"}}}, ""},
		{"CN over 256 bytes", pkix.Name{CommonName: strings.Repeat("c", 257)}, ""},
		{"empty CN", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: ""}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, _, _ := leaf(t, ca, &x509.Certificate{Subject: tt.subject})
			got, err := CallerID(cert)
			if tt.want == "" {
				if err == nil {
					t.Errorf("CallerID = %q, want a rejection", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("CallerID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := CallerID(nil); err == nil {
		t.Error("no certificate accepted")
	}
}

// The issuer's CN and the SANs are never the identity.
func TestCallerIDIgnoresIssuerAndSANs(t *testing.T) {
	ca := newCA(t, "aef1")
	cert, _, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{Organization: []string{"x"}}, DNSNames: []string{"inv1"}})
	if id, err := CallerID(cert); err == nil {
		t.Errorf("CallerID = %q from the issuer or a SAN", id)
	}
}

func TestTLSClientCertificate(t *testing.T) {
	ca := newCA(t, "test CA")
	cert, _, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}})
	r := httptest.NewRequest("GET", "/", nil)
	if c, err := TLSClientCertificate(r); c != nil || err != nil {
		t.Errorf("plain HTTP: %v, %v", c, err)
	}
	r.TLS = &tls.ConnectionState{}
	if c, err := TLSClientCertificate(r); c != nil || err != nil {
		t.Errorf("no verified chain: %v, %v", c, err)
	}
	// A presented but unverified certificate is not an identity.
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if c, _ := TLSClientCertificate(r); c != nil {
		t.Error("an unverified peer certificate was used")
	}
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert, ca.Cert}}}
	if c, err := TLSClientCertificate(r); c != cert || err != nil {
		t.Errorf("verified chain: %v, %v", c, err)
	}
}

func TestVerifyPEM(t *testing.T) {
	ca := newCA(t, "client CA")
	other := newCA(t, "other CA")
	_, good, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}})
	_, anyEKU, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	_, both, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	_, wrongCA, _ := leaf(t, other, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}})
	_, expired, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}, NotBefore: testNow.Add(-48 * time.Hour), NotAfter: testNow.Add(-24 * time.Hour)})
	_, future, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}, NotBefore: testNow.Add(24 * time.Hour), NotAfter: testNow.Add(48 * time.Hour)})
	_, serverOnly, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	_, selfSigned, _ := leaf(t, nil, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}})

	// An intermediate CA under a root that allows one, and a leaf it issued.
	rootCert, _, rootKey := leaf(t, nil, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign})
	root := &devpki.CA{Cert: rootCert, Key: rootKey}
	roots := ca.Pool()
	roots.AddCert(rootCert)
	interCert, interPEM, interKey := leaf(t, root, &x509.Certificate{Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	inter := &devpki.CA{Cert: interCert, Key: interKey}
	_, viaInter, _ := leaf(t, inter, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}})
	// The other CA's root sent along as an extra block must not become a root.
	_, otherRootPEM, _ := leaf(t, nil, &x509.Certificate{Subject: pkix.Name{CommonName: "rogue root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	interPool := x509.NewCertPool()
	interPool.AddCert(interCert)

	tests := []struct {
		name          string
		pem           []byte
		intermediates *x509.CertPool
		ok            bool
	}{
		{"good", good, nil, true},
		{"good with text around", cat([]byte("subject=CN=inv1\n"), good, []byte("trailer\n")), nil, true},
		{"EKU any", anyEKU, nil, true},
		{"client and server auth", both, nil, true},
		{"other CA", wrongCA, nil, false},
		{"expired", expired, nil, false},
		{"not yet valid", future, nil, false},
		{"server auth only", serverOnly, nil, false},
		{"self-signed", selfSigned, nil, false},
		{"self-signed with itself appended", cat(selfSigned, selfSigned), nil, false},
		{"via intermediate, chain sent along", cat(viaInter, interPEM), nil, true},
		{"via intermediate, from the pool", viaInter, interPool, true},
		{"via intermediate, intermediate missing", viaInter, nil, false},
		{"other CA with its root appended", cat(wrongCA, other.PEM), nil, false},
		{"rogue root appended", cat(selfSigned, otherRootPEM), nil, false},
		{"garbage block after a good leaf", cat(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), nil, true},
		{"empty", nil, nil, false},
		{"not PEM", []byte("hello"), nil, false},
		{"a key, not a certificate", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2}}), nil, false},
		{"certificate block that does not parse", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := VerifyPEM(tt.pem, roots, tt.intermediates, testNow)
			if tt.ok {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if id, _ := CallerID(cert); id != "inv1" {
					t.Errorf("leaf CN %q", id)
				}
				return
			}
			if err == nil {
				t.Errorf("accepted %s", cert.Subject)
			}
		})
	}
	// The pool passed in is not changed by the blocks sent along.
	empty := x509.NewCertPool()
	if _, err := VerifyPEM(cat(viaInter, interPEM), roots, empty, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyPEM(viaInter, roots, empty, testNow); err == nil {
		t.Error("an intermediate sent along with one request was remembered")
	}
	// Time is the caller's: a certificate valid now is expired later.
	if _, err := VerifyPEM(good, ca.Pool(), nil, testNow.Add(2*time.Hour)); err == nil {
		t.Error("verified after its NotAfter")
	}
}

// No roots is no trust, never the system's roots. The system pool is pointed at a test CA (it is
// loaded once per process, on first use, and no other test of this package uses it), so falling
// back to it would verify the certificate.
func TestVerifyPEMWithoutRoots(t *testing.T) {
	ca := newCA(t, "pretend public CA")
	path := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(path, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", path)
	t.Setenv("SSL_CERT_DIR", t.TempDir())
	_, good, _ := leaf(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: "inv1"}})
	if _, err := VerifyPEM(good, nil, nil, testNow); err == nil {
		t.Error("verified against the system roots when no roots were given")
	}
	if _, err := VerifyPEM(good, ca.Pool(), nil, testNow); err != nil {
		t.Errorf("with the roots given: %v", err)
	}
}

// ClientCertificates verifies a connection's certificate in its handshake, answers every request
// of the connection from that verdict, and forgets it when the connection closes.
func TestClientCertificatesPerConnection(t *testing.T) {
	ca := newCA(t, "runner CA")
	other := newCA(t, "another CA")
	cc := NewClientCertificates(ca.Pool(), nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := cc.Source(r)
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusUnauthorized)
		case cert == nil:
			http.Error(w, "none", http.StatusUnauthorized)
		default:
			_, _ = w.Write([]byte(cert.Subject.CommonName))
		}
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, VerifyConnection: cc.VerifyConnection}
	srv.Config.ConnState = cc.ConnState
	srv.StartTLS()
	defer srv.Close()
	get := func(cert tls.Certificate) (int, string) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, // the test server's own certificate
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		var status int
		var body []byte
		for range 2 { // two requests on one connection
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
		return status, string(body)
	}
	good, err := ca.Client("inv-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Client("inv-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := get(good.TLS); status != http.StatusOK || body != "inv-1" {
		t.Errorf("the runner CA's certificate: %d %s", status, body)
	}
	if status, body := get(foreign.TLS); status != http.StatusUnauthorized || !strings.Contains(body, "does not verify") {
		t.Errorf("another CA's certificate: %d %s", status, body)
	}
	// Both connections closed: nothing is kept (the server notices the close asynchronously).
	deadline := time.Now().Add(10 * time.Second)
	for n := 1; n > 0; time.Sleep(10 * time.Millisecond) {
		n = 0
		cc.verdicts.Range(func(any, any) bool { n++; return true })
		if time.Now().After(deadline) {
			t.Fatalf("%d verdicts kept after their connections closed", n)
		}
	}
}
