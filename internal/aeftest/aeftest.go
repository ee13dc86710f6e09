// Package aeftest is an AEF's revoke-authorization for tests (AEF_Security_API): a mutual-TLS
// listener with its own CA that records every push, checks each body against the bundled Rel-18
// and Rel-19 RevokeAuthorizationReq schemas, and answers as a test scripts it.
package aeftest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
)

// Push is one request an AEF received.
type Push struct {
	AEF       string // the path prefix naming the AEF (Root's name)
	WebhookID string
	CN        string // the Subject CN of the verified client certificate
	Body      []byte
	Req       capif.RevokeAuthorizationReq
	At        time.Time
}

// Server hosts any number of AEFs, each under its own path prefix of one listener.
type Server struct {
	t       testing.TB
	srv     *httptest.Server
	tls     *tls.Config
	addr    string     // kept across Down and Up
	CA      *devpki.CA // issued the server certificate: what the CCF's -aef-ca must trust
	CAFile  string     // CA in PEM, for -aef-ca
	clients atomic.Pointer[x509.CertPool]
	schemas []*openapi3.Schema

	mu      sync.Mutex
	pushes  []Push
	answers map[string][]int // AEF → statuses to answer next, in order (then 200)
	arrived chan struct{}
}

// Start listens on 127.0.0.1 with a certificate for 127.0.0.1 from a fresh CA. Clients must
// present a certificate that verifies against the pool TrustClients sets (none before).
func Start(t testing.TB) *Server {
	t.Helper()
	ca, err := devpki.NewCA("aeftest AEF CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, CA: ca, CAFile: filepath.Join(t.TempDir(), "aef-ca.pem"), answers: map[string][]int{}, arrived: make(chan struct{}, 1024)}
	if err := os.WriteFile(s.CAFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s.schemas = loadSchemas(t)
	s.clients.Store(x509.NewCertPool())
	s.tls = &tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{Certificates: []tls.Certificate{cert.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: s.clients.Load()}, nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.listen(ln)
	t.Cleanup(func() { s.Down() })
	return s
}

// listen serves on ln.
func (s *Server) listen(ln net.Listener) {
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.TLS = s.tls
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are part of the tests
	s.srv.StartTLS()
}

// TrustClients sets the CAs whose client certificates are accepted (the CCF's).
func (s *Server) TrustClients(pool *x509.CertPool) { s.clients.Store(pool) }

// Root is the aefSecurityRoot of the AEF named name.
func (s *Server) Root(name string) string { return "https://" + s.addr + "/" + name }

// Answer makes the next requests to AEF name answer these statuses, one each, before 200s.
func (s *Server) Answer(name string, statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[name] = append(s.answers[name], statuses...)
}

// Down stops the listener until Up: connections to the AEF are refused.
func (s *Server) Down() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Up listens again, on the same address.
func (s *Server) Up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatalf("aeftest: listening again on %s: %v", s.addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listen(ln)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	p := Push{AEF: name, WebhookID: r.Header.Get("webhook-id"), Body: body, At: time.Now()}
	if len(r.TLS.PeerCertificates) > 0 {
		p.CN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	if "/"+rest != capif.RevokeAuthorizationPath || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		s.t.Errorf("aeftest: %s %s (Content-Type %q), want POST {root}%s with JSON", r.Method, r.URL.Path, r.Header.Get("Content-Type"), capif.RevokeAuthorizationPath)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		s.t.Errorf("aeftest: the push is not JSON: %s", body)
	}
	for _, sc := range s.schemas {
		if err := sc.VisitJSON(v); err != nil {
			s.t.Errorf("aeftest: the push does not match RevokeAuthorizationReq: %v\n%s", err, body)
		}
	}
	_ = json.Unmarshal(body, &p.Req)
	s.mu.Lock()
	s.pushes = append(s.pushes, p)
	status := http.StatusOK
	if q := s.answers[name]; len(q) > 0 {
		status, s.answers[name] = q[0], q[1:]
	}
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	if status != http.StatusOK {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(capif.RevokeAuthorizationRsp{SupportedFeatures: "0"})
}

// Pushes returns what the AEF name received, in order ("" for every AEF).
func (s *Server) Pushes(name string) []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Push
	for _, p := range s.pushes {
		if name == "" || p.AEF == name {
			out = append(out, p)
		}
	}
	return out
}

// Wait waits until AEF name has received n pushes, for at most d.
func (s *Server) Wait(t testing.TB, name string, n int, d time.Duration) []Push {
	t.Helper()
	deadline := time.After(d)
	for {
		if got := s.Pushes(name); len(got) >= n {
			return got
		}
		select {
		case <-s.arrived:
		case <-deadline:
			t.Fatalf("aeftest: %s received %d pushes within %s, want %d", name, len(s.Pushes(name)), d, n)
		}
	}
}

// loadSchemas reads RevokeAuthorizationReq from the bundled AEF_Security_API of Rel-18 and
// Rel-19 (../shared/spec).
func loadSchemas(t testing.TB) []*openapi3.Schema {
	t.Helper()
	dir := testenv.SpecDir(t)
	var out []*openapi3.Schema
	for _, p := range []string{filepath.Join(dir, "bundled", "AEF_Security_API.bundled.yaml"), filepath.Join(dir, "rel19", "bundled", "AEF_Security_API.bundled.yaml")} {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(p)
		if err != nil {
			t.Fatalf("aeftest: %v", err)
		}
		ref := doc.Components.Schemas["RevokeAuthorizationReq"]
		if ref == nil || ref.Value == nil {
			t.Fatalf("aeftest: %s has no RevokeAuthorizationReq", p)
		}
		out = append(out, ref.Value)
	}
	return out
}

// String describes a push for failure messages.
func (p Push) String() string {
	return fmt.Sprintf("%s: %s from %q (webhook-id %s)", p.AEF, p.Body, p.CN, p.WebhookID)
}
