package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

const (
	inv1Secret = "s3cret-inv1"
	clientCA   = "-----BEGIN CERTIFICATE-----\nTEST CA\n-----END CERTIFICATE-----\n"
	apiRoot    = "https://ccf.example.com:8443"
)

func port(p int) *int { return &p }

var ifA = capif.InterfaceDescription{Fqdn: "a.example.com", Port: port(443)}

func testRegistry() security.RegistryDoc {
	return security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv1", OnboardingSecret: inv1Secret}, {APIInvokerID: "inv2"}, {APIInvokerID: "odd/id%x"}},
		AEFs:        []security.AEFRecord{{AefID: "aef1"}, {AefID: "aef2"}, {AefID: "aef3"}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIID: "apiA", APIName: "alpha", AefProfiles: []capif.AefProfile{{AefID: "aef1", SecurityMethods: []string{capif.PKI, capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{ifA}}}},
			{APIID: "apiC", APIName: "gamma", AefProfiles: []capif.AefProfile{{AefID: "aef2", SecurityMethods: []string{capif.PSK}, DomainName: "c.example.com"}}},
		},
	}
}

type testServer struct {
	t        *testing.T
	db       *embedded.DB
	store    *securitytest.Store
	svc      *security.Service
	h        http.Handler
	logs     *bytes.Buffer
	ca       *devpki.CA
	notifier *securitytest.Notifier
	signer   *securitytest.Signer
	opts     Options
	certs    map[string]*x509.Certificate
}

func newServer(t *testing.T, build func(*security.Service, Options) *Router) *testServer {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s := &testServer{t: t, db: db, store: &securitytest.Store{Store: db}, logs: &bytes.Buffer{}, notifier: &securitytest.Notifier{}, signer: &securitytest.Signer{},
		ca: newCA(t, "client CA"), certs: map[string]*x509.Certificate{}}
	logger := slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.svc = security.New(s.store, db, s.signer, s.notifier, nil, security.Config{Issuer: "ccf", APIRoot: apiRoot, ClientCA: func(context.Context) (string, error) { return clientCA, nil }, MaxAttempts: 2, Logger: logger})
	if err := s.svc.ImportRegistry(context.Background(), testRegistry()); err != nil {
		t.Fatal(err)
	}
	if build == nil {
		build = All
	}
	s.opts = Options{APIRoot: apiRoot, Logger: logger, MetricsNamespace: testNamespace}
	s.h = build(s.svc, s.opts)
	return s
}

func (s *testServer) cert(cn string) *x509.Certificate {
	if c, ok := s.certs[cn]; ok {
		return c
	}
	c, _, _ := leaf(s.t, s.ca, &x509.Certificate{Subject: pkix.Name{CommonName: cn}})
	s.certs[cn] = c
	return c
}

// req builds a request; caller "" presents no certificate.
func (s *testServer) req(method, target, caller, contentType, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if caller != "" {
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{s.cert(caller), s.ca.Cert}}}
	}
	return r
}

func (s *testServer) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w
}

func (s *testServer) do(method, target, caller, contentType, body string) *httptest.ResponseRecorder {
	return s.serve(s.req(method, target, caller, contentType, body))
}

func (s *testServer) json(method, target, caller string, body any) *httptest.ResponseRecorder {
	b, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do(method, target, caller, "application/json", string(b))
}

const invokers = Base + "/trustedInvokers/"

func createBody(entries ...capif.SecurityInformation) *capif.ServiceSecurity {
	if len(entries) == 0 {
		entries = []capif.SecurityInformation{
			{AefID: "aef1", PrefSecurityMethods: []string{capif.OAUTH}},
			{AefID: "aef2", PrefSecurityMethods: []string{capif.PSK}},
		}
	}
	return &capif.ServiceSecurity{NotificationDestination: "https://inv.example.com/cb", SecurityInfo: entries}
}

func (s *testServer) mustCreate(id string) *capif.ServiceSecurity {
	s.t.Helper()
	w := s.json(http.MethodPut, invokers+escape(id), id, createBody())
	if w.Code != http.StatusCreated {
		s.t.Fatalf("create %s: %d %s", id, w.Code, w.Body)
	}
	var out capif.ServiceSecurity
	decodeAs(s.t, w, &out)
	return &out
}

func escape(id string) string {
	return strings.ReplaceAll(strings.ReplaceAll(id, "%", "%25"), "/", "%2F")
}

func decodeAs(t *testing.T, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
}

// problem checks a ProblemDetails answer.
func problem(t *testing.T, w *httptest.ResponseRecorder, status int, cause string, pointers ...string) capif.ProblemDetails {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p capif.ProblemDetails
	decodeAs(t, w, &p)
	if p.Status != status || p.Title != http.StatusText(status) {
		t.Errorf("problem status %d title %q", p.Status, p.Title)
	}
	if cause != "" && p.Cause != cause {
		t.Errorf("cause %q, want %q (%s)", p.Cause, cause, w.Body)
	}
	var got []string
	for _, ip := range p.InvalidParams {
		got = append(got, ip.Param)
	}
	if fmt.Sprint(got) != fmt.Sprint(pointers) && (len(got) > 0 || len(pointers) > 0) {
		t.Errorf("invalidParams %v, want %v", got, pointers)
	}
	return p
}

// oauthErr checks an AccessTokenErr answer.
func oauthErr(t *testing.T, w *httptest.ResponseRecorder, status int, code string) capif.AccessTokenErr {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e capif.AccessTokenErr
	decodeAs(t, w, &e)
	if e.Error != code {
		t.Errorf("error %q, want %q (%s)", e.Error, code, w.Body)
	}
	return e
}

// bodies are the bodies of the notifications a Notifier was asked to deliver.
func bodies(sent []securitytest.Sent) []any {
	out := make([]any, len(sent))
	for i, s := range sent {
		out[i] = s.Body
	}
	return out
}
