// Package ccftest is the examples' test fixture: a dev CA in a temporary data directory laid
// out as the runner lays it out, and a stand-in CAPIF core function that serves a local
// signer's JWKS over mutual TLS and issues tokens with it.
package ccftest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/signer/local"
)

// Issuer is the iss of every token the stand-in issues.
const Issuer = "https://ccf.test"

// CCF is a running stand-in; it stops when the test ends.
type CCF struct {
	Dir    string // data directory: ca.pem, ca-key.pem, clients/
	CA     *devpki.CA
	URL    string // serves the JWKS at /.well-known/jwks.json, to dev-CA client certificates only
	t      testing.TB
	signer *local.Signer // ES256
	rs256  *local.Signer // RS256: the JWKS publishes both keys
	// RSAKey is the RS256 key, for tests that forge tokens with it.
	RSAKey *rsa.PrivateKey
}

// Start makes the CA and the signer and starts serving the JWKS.
func Start(t testing.TB) *CCF {
	t.Helper()
	dir := t.TempDir()
	ca, err := devpki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := local.Generate()
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := local.New(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := signer.JWKS(t.Context())
	rsJWKS, _ := rs256.JWKS(t.Context())
	jwks.Keys = append(jwks.Keys, rsJWKS.Keys...)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != httpapi.JWKSPath { // where the real service serves it
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(jwks)
	}))
	serverCert, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &CCF{Dir: dir, CA: ca, URL: srv.URL, t: t, signer: signer, rs256: rs256, RSAKey: rsaKey}
}

// Client issues a client certificate for id and writes it where the runner's cert command
// would: clients/ID.pem and clients/ID-key.pem.
func (c *CCF) Client(id string) (certFile, keyFile string, issued *devpki.Issued) {
	c.t.Helper()
	issued, err := c.CA.Client(id, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	clients := filepath.Join(c.Dir, "clients")
	certFile, keyFile = filepath.Join(clients, id+".pem"), filepath.Join(clients, id+"-key.pem")
	if os.MkdirAll(clients, 0o700) != nil || os.WriteFile(certFile, issued.CertPEM, 0o600) != nil || os.WriteFile(keyFile, issued.KeyPEM, 0o600) != nil {
		c.t.Fatal("writing certificates")
	}
	return certFile, keyFile, issued
}

// Token signs a five-minute ES256 token for invoker-1 at aef-1 with scope, bound to holder.
func (c *CCF) Token(scope string, holder *devpki.Issued) string {
	c.t.Helper()
	return c.TokenAlg(capif.ES256, scope, holder)
}

// RSAKid is the kid of the RS256 key.
func (c *CCF) RSAKid() string { return c.rs256.KeyID() }

// Claims are the claims Token signs.
func Claims(scope string, holder *devpki.Issued) capif.TokenClaims {
	now := time.Now().Unix()
	return capif.TokenClaims{
		Issuer: Issuer, Subject: "invoker-1", ClientID: "invoker-1", Audience: []string{"aef-1"},
		Scope: scope, IssuedAt: now, Expiry: now + 300, ID: "jti-1",
		Confirmation: &capif.Confirmation{X5tS256: capif.CertThumbprint(holder.TLS.Leaf.Raw)},
	}
}

// TokenAlg is Token signed with the key of alg (capif.ES256 or capif.RS256).
func (c *CCF) TokenAlg(alg, scope string, holder *devpki.Issued) string {
	c.t.Helper()
	s := c.signer
	if alg == capif.RS256 {
		s = c.rs256
	}
	tok, err := s.Sign(c.t.Context(), Claims(scope, holder))
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}
