package aefauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/signer/local"
)

const (
	issuer  = "https://ccf.test"
	aefID   = "aef-1"
	apiName = "monitoring-event"
)

// clock is a settable time source shared by the verifier and the token builder.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ccf is the CCF side of a test: a dev CA, a signing key, and a JWKS served over TLS that
// requires a client certificate from the CA.
type ccf struct {
	ca      *devpki.CA
	key     *ecdsa.PrivateKey
	signer  *local.Signer
	srv     *httptest.Server
	jwks    atomic.Pointer[capif.JWKSet]
	hits    atomic.Int64
	failing atomic.Bool
	delay   atomic.Int64 // nanoseconds each JWKS answer takes
	clock   *clock
	// Client certificates: the AEF's (for the JWKS) and two invokers'.
	aef, invokerA, invokerB *devpki.Issued
}

func newCCF(t testing.TB) *ccf {
	t.Helper()
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	c := &ccf{ca: ca, clock: &clock{t: time.Now().Truncate(time.Second)}}
	c.key, c.signer = newKey(t)
	set, _ := c.signer.JWKS(context.Background())
	c.jwks.Store(&set)
	for _, p := range []struct {
		dst **devpki.Issued
		id  string
	}{{&c.aef, aefID}, {&c.invokerA, "invoker-1"}, {&c.invokerB, "invoker-2"}} {
		if *p.dst, err = ca.Client(p.id, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	serverCert, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		time.Sleep(time.Duration(c.delay.Load()))
		if r.URL.Path != "/.well-known/jwks.json" || c.failing.Load() {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.jwks.Load())
	}))
	c.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
	c.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected in tests
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	return c
}

func newKey(t testing.TB) (*ecdsa.PrivateKey, *local.Signer) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := local.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, s
}

func (c *ccf) jwksURL() string { return c.srv.URL + "/.well-known/jwks.json" }

// verifier is an aefauth.Verifier for aef-1 on c's JWKS, fetched with the AEF's certificate.
func (c *ccf) verifier(t testing.TB, mutate func(*aefauth.Config)) *aefauth.Verifier {
	t.Helper()
	cfg := aefauth.Config{
		JWKSURL: c.jwksURL(),
		Client:  aefauth.MTLSClient(c.aef.TLS, c.ca.Pool()),
		Issuer:  issuer,
		AefID:   aefID,
		Now:     c.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := aefauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// claims are good claims for invoker A calling aef-1's monitoring-event.
func (c *ccf) claims() capif.TokenClaims {
	now := c.clock.Now().Unix()
	return capif.TokenClaims{
		Issuer: issuer, Subject: "invoker-1", ClientID: "invoker-1", Audience: []string{aefID},
		Scope: "3gpp#" + aefID + ":" + apiName, IssuedAt: now, Expiry: now + 600, ID: "jti-good",
		Confirmation: &capif.Confirmation{X5tS256: capif.CertThumbprint(c.invokerA.TLS.Leaf.Raw)},
	}
}

// token signs cl with the CCF's real local signer.
func (c *ccf) token(t testing.TB, cl capif.TokenClaims) string {
	t.Helper()
	tok, err := c.signer.Sign(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request is a request to the API whose TLS connection presented (and had verified) cert.
func request(token string, cert *devpki.Issued) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://aef.test/monitoring-event/x", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	if cert != nil {
		leaf := cert.TLS.Leaf
		r.TLS.PeerCertificates = []*x509.Certificate{leaf}
		r.TLS.VerifiedChains = [][]*x509.Certificate{{leaf}}
	}
	return r
}
