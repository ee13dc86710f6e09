package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
)

// aefPKI is a CA that issues the CCF's client certificate and the AEFs' server certificates.
type aefPKI struct {
	ca  *devpki.CA
	ccf *devpki.Issued
}

func newAEFPKI(t *testing.T) *aefPKI {
	t.Helper()
	ca, err := devpki.NewCA("test AEF CA")
	if err != nil {
		t.Fatal(err)
	}
	ccf, err := ca.Client("ccf", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &aefPKI{ca: ca, ccf: ccf}
}

// aefServer is an AEF's revoke-authorization over mutual TLS: its certificate is for hosts,
// issued by serverCA; it requires a client certificate from clientCAs.
type aefServer struct {
	*httptest.Server
	mu       sync.Mutex
	peers    []string // the CN of each request's client certificate
	bodies   [][]byte
	requests int
}

func newAEFServer(t *testing.T, serverCA *devpki.CA, hosts []string, clientCAs *x509.CertPool, h func(w http.ResponseWriter, r *http.Request)) *aefServer {
	t.Helper()
	s := &aefServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests++
		s.bodies = append(s.bodies, b)
		if len(r.TLS.PeerCertificates) > 0 {
			s.peers = append(s.peers, r.TLS.PeerCertificates[0].Subject.CommonName)
		} else {
			s.peers = append(s.peers, "")
		}
		s.mu.Unlock()
		h(w, r)
	}))
	cert, err := serverCA.Server(hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, ClientCAs: clientCAs, ClientAuth: tls.RequireAndVerifyClientCert}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *aefServer) pushURL() string {
	return s.URL + capif.RevokeAuthorizationPath
}

func answer(status int, body string, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func revokeReq() capif.RevokeAuthorizationReq {
	return capif.RevokeAuthorizationReq{SupportedFeatures: "0",
		RevokeInfo: capif.SecurityNotification{APIInvokerID: "inv-1", AefID: "aef-1", APIIDs: []string{"api-1"}, Cause: capif.UnexpectedReason}}
}

// outcome names how an error is classified (security.Notifier).
func outcome(err error) string {
	switch {
	case err == nil:
		return "delivered"
	case errors.Is(err, security.ErrUndeliverable):
		return "dead"
	case errors.Is(err, security.ErrNotAccepted):
		return "not accepted"
	case errors.Is(err, security.ErrNoListener):
		return "no listener"
	}
	return "retried"
}

// TestPushToAEF is the table of issue §3: each answer of an AEF and what becomes of the push.
func TestPushToAEF(t *testing.T) {
	pki := newAEFPKI(t)
	tests := []struct {
		name    string
		answer  func(http.ResponseWriter, *http.Request)
		want    string
		warning string // a WARN record that must be logged, "" for none
	}{
		{"200 RevokeAuthorizationRsp", answer(200, `{"supportedFeatures":"0"}`), "delivered", ""},
		{"200 with no body", answer(200, ""), "delivered", "no valid RevokeAuthorizationRsp"},
		{"204", answer(204, ""), "delivered", "no valid RevokeAuthorizationRsp"},
		{"200 with a malformed body", answer(200, `{"supportedFeatures":`), "delivered", "no valid RevokeAuthorizationRsp"},
		{"307", answer(307, "", "Location", "https://elsewhere.example.net/aef-security/v1/x?secret=1"), "retried", "location=https://elsewhere.example.net"},
		{"308", answer(308, "", "Location", "https://elsewhere.example.net/y"), "retried", "location=https://elsewhere.example.net"},
		{"404", answer(404, ""), "dead", ""},
		{"410", answer(410, ""), "dead", ""},
		{"400", answer(400, `{"cause":"x"}`), "not accepted", ""},
		{"401", answer(401, ""), "not accepted", ""},
		{"403", answer(403, ""), "not accepted", ""},
		{"411", answer(411, ""), "not accepted", ""},
		{"413", answer(413, ""), "not accepted", ""},
		{"415", answer(415, ""), "not accepted", ""},
		{"429", answer(429, "", "Retry-After", "5"), "retried", ""},
		{"500", answer(500, ""), "retried", ""},
		{"503", answer(503, ""), "retried", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAEFServer(t, pki.ca, []string{"127.0.0.1"}, pki.ca.Pool(), tt.answer)
			n, logs := newNotifier(t, Options{AllowLoopback: true, CCF: identity(pki.ca.Pool(), func() (*tls.Certificate, error) { return &pki.ccf.TLS, nil })})
			err := n.Notify(t.Context(), security.Delivery{ID: "n1", Kind: security.ToAEF, Destination: srv.pushURL(), Body: revokeReq()})
			if got := outcome(err); got != tt.want {
				t.Fatalf("outcome %s (%v), want %s", got, err, tt.want)
			}
			warned := strings.Contains(logs.String(), "level=WARN")
			switch {
			case tt.warning != "" && (!warned || !strings.Contains(logs.String(), tt.warning)):
				t.Errorf("log %q, want a WARN with %q", logs.String(), tt.warning)
			case tt.warning == "" && warned:
				t.Errorf("log %q has a WARN", logs.String())
			}
			assertNoSecret(t, "log", strings.ReplaceAll(logs.String(), "secret=1", "s3cret"))
			if srv.requests != 1 || srv.peers[0] != "ccf" {
				t.Fatalf("the AEF saw %d requests from %v, want one from ccf", srv.requests, srv.peers)
			}
			var got capif.RevokeAuthorizationReq
			if err := json.Unmarshal(srv.bodies[0], &got); err != nil || got.RevokeInfo.AefID != "aef-1" || got.SupportedFeatures != "0" {
				t.Errorf("the AEF received %s", srv.bodies[0])
			}
		})
	}
}

// TestPushTLSFailures: a failed handshake with an AEF is our request or certificate at fault
// (or the AEF's certificate): retried, classified ErrNotAccepted.
func TestPushTLSFailures(t *testing.T) {
	pki := newAEFPKI(t)
	other, err := devpki.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	ok := answer(200, `{"supportedFeatures":"0"}`)
	tests := []struct {
		name     string
		serverCA *devpki.CA
		hosts    []string
		trusts   *x509.CertPool // the client CAs the AEF accepts
		ccf      func() (*tls.Certificate, error)
		want     string
	}{
		{"the AEF does not trust the CCF's CA", pki.ca, []string{"127.0.0.1"}, other.Pool(), nil, "not accepted"},
		{"the AEF's certificate is not from CAPIF_AEF_CA", other, []string{"127.0.0.1"}, pki.ca.Pool(), nil, "not accepted"},
		{"the AEF's certificate names another host", pki.ca, []string{"aef.example.com"}, pki.ca.Pool(), nil, "not accepted"},
		{"no CCF certificate here", pki.ca, []string{"127.0.0.1"}, pki.ca.Pool(), func() (*tls.Certificate, error) { return nil, errNoCCFCertificate }, "not accepted"},
		{"all good", pki.ca, []string{"127.0.0.1"}, pki.ca.Pool(), nil, "delivered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAEFServer(t, tt.serverCA, tt.hosts, tt.trusts, ok)
			ccf := tt.ccf
			if ccf == nil {
				ccf = func() (*tls.Certificate, error) { return &pki.ccf.TLS, nil }
			}
			n, _ := newNotifier(t, Options{AllowLoopback: true, CCF: identity(pki.ca.Pool(), ccf)})
			err := n.Notify(t.Context(), security.Delivery{ID: "n1", Kind: security.ToAEF, Destination: srv.pushURL(), Body: revokeReq()})
			if got := outcome(err); got != tt.want {
				t.Fatalf("outcome %s (%v), want %s", got, err, tt.want)
			}
		})
	}
}

func TestPushConnectionRefusedAndPlainHTTP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	pki := newAEFPKI(t)
	n, _ := newNotifier(t, Options{AllowLoopback: true, CCF: identity(pki.ca.Pool(), func() (*tls.Certificate, error) { return &pki.ccf.TLS, nil })})
	for _, kind := range []security.OwedKind{security.ToAEF, security.ToInvoker} {
		err := n.Notify(t.Context(), security.Delivery{ID: "n1", Kind: kind, Destination: "https://" + addr + secretPath, Body: revokeReq()})
		if got := outcome(err); got != "no listener" {
			t.Errorf("%s: outcome %s (%v), want no listener", kind, got, err)
		}
		assertNoSecret(t, "error", err.Error())
	}
	err = n.Notify(t.Context(), security.Delivery{ID: "n1", Kind: security.ToAEF, Destination: "http://" + addr + "/aef-security/v1/revoke-authorization", Body: revokeReq()})
	if !errors.Is(err, ErrRefused) {
		t.Errorf("plain http to an AEF: %v, want refused", err)
	}
}

// TestInvokersNeverSeeTheCCFCertificate: an invoker's destination that asks for a client
// certificate gets none, and keeps the invoker's table (404 is retried).
func TestInvokersNeverSeeTheCCFCertificate(t *testing.T) {
	pki := newAEFPKI(t)
	var seen []int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, len(r.TLS.PeerCertificates))
		w.WriteHeader(http.StatusNotFound)
	}))
	cert, err := pki.ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	n, _ := newNotifier(t, Options{AllowLoopback: true, CCF: identity(pki.ca.Pool(), func() (*tls.Certificate, error) { return &pki.ccf.TLS, nil })})
	// The invoker client trusts the system roots only; give it this test server's CA.
	n.client.Transport.(*http.Transport).TLSClientConfig.RootCAs = pki.ca.Pool()
	err = n.Notify(t.Context(), security.Delivery{ID: "n1", Destination: srv.URL + "/cb", Body: revokeReq().RevokeInfo})
	if got := outcome(err); got != "retried" {
		t.Errorf("an invoker's 404: %s (%v), want retried", got, err)
	}
	if len(seen) != 1 || seen[0] != 0 {
		t.Errorf("the invoker's destination saw client certificates %v, want none", seen)
	}
}

// identity is an Options.CCF that always has roots and cert.
func identity(roots *x509.CertPool, cert func() (*tls.Certificate, error)) func(context.Context) (CCFIdentity, error) {
	return func(context.Context) (CCFIdentity, error) {
		return CCFIdentity{Certificate: cert, AEFRoots: roots}, nil
	}
}

// TestPushWithoutIdentity: a notifier without a CCF identity, or whose identity cannot be
// read, fails the push as the service's fault (retried), and reads it again next time.
func TestPushWithoutIdentity(t *testing.T) {
	pki := newAEFPKI(t)
	srv := newAEFServer(t, pki.ca, []string{"127.0.0.1"}, pki.ca.Pool(), answer(200, `{"supportedFeatures":"0"}`))
	d := security.Delivery{ID: "n1", Kind: security.ToAEF, Destination: srv.pushURL(), Body: revokeReq()}
	n, _ := newNotifier(t, Options{AllowLoopback: true})
	if got := outcome(n.Notify(t.Context(), d)); got != "not accepted" {
		t.Errorf("no identity: %s", got)
	}
	calls := 0
	n, _ = newNotifier(t, Options{AllowLoopback: true, CCF: func(ctx context.Context) (CCFIdentity, error) {
		calls++
		if calls == 1 {
			return CCFIdentity{}, errors.New("S3 is down")
		}
		return identity(pki.ca.Pool(), func() (*tls.Certificate, error) { return &pki.ccf.TLS, nil })(ctx)
	}})
	if got := outcome(n.Notify(t.Context(), d)); got != "not accepted" {
		t.Errorf("identity unreadable: %s", got)
	}
	for range 2 {
		if err := n.Notify(t.Context(), d); err != nil {
			t.Errorf("identity readable again: %v", err)
		}
	}
	if calls != 2 {
		t.Errorf("the identity was read %d times, want 2 (kept once read)", calls)
	}
}
