package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/signer/local"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// benchServer is the whole request path of the local runner without TLS: router, identity,
// decoding, domain, embedded store, real ES256 signing, access log with its metrics (to
// io.Discard).
type benchServer struct {
	h     http.Handler
	certs map[string]*x509.Certificate
}

func newBenchServer(b *testing.B) *benchServer {
	b.Helper()
	db, err := embedded.Open(filepath.Join(b.TempDir(), "capif.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	sig, err := local.Generate()
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	svc := security.New(db, db, sig, &securitytest.Notifier{}, nil, security.Config{Issuer: "ccf", APIRoot: apiRoot, Logger: logger})
	if err := svc.ImportRegistry(context.Background(), testRegistry()); err != nil {
		b.Fatal(err)
	}
	ca, err := devpki.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	s := &benchServer{h: All(svc, Options{APIRoot: apiRoot, Logger: logger, MetricsNamespace: "CAPIF/Security"}), certs: map[string]*x509.Certificate{}}
	for _, id := range []string{"inv2", "aef1"} {
		issued, err := ca.Client(id, 24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		s.certs[id] = issued.TLS.Leaf
		if s.certs[id] == nil {
			s.certs[id], _ = x509.ParseCertificate(issued.TLS.Certificate[0])
		}
	}
	body := `{"notificationDestination":"https://inv.example.com/cb","securityInfo":[` +
		`{"aefId":"aef1","prefSecurityMethods":["OAUTH"]},{"aefId":"aef2","prefSecurityMethods":["PSK"]}]}`
	if w := s.do(http.MethodPut, invokers+"inv2", "inv2", "application/json", body); w.Code != http.StatusCreated {
		b.Fatalf("create: %d %s", w.Code, w.Body)
	}
	return s
}

func (s *benchServer) do(method, target, caller, contentType, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{s.certs[caller]}}}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w
}

// benchWriter is the ResponseWriter of the measured loops: one per benchmark, reset per request.
type benchWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// request is one benchmark case's request, made once and handed over fresh per iteration as
// net/http's server hands a request to its handler: a new *http.Request with its own header map
// and body, on one keep-alive connection (its TLS state). Reading and parsing the request off the connection (what
// httptest.NewRequest redoes, with a 4 KiB bufio.Reader) is the server's work, not the
// handler's; the loopback benchmark (cmd/capif-local) measures it with the rest of net/http.
type request struct {
	template *http.Request
	body     string
}

func (s *benchServer) request(method, target, caller, contentType, body string) *request {
	r := httptest.NewRequest(method, target, nil)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{s.certs[caller]}}}
	r.ContentLength = int64(len(body))
	return &request{template: r, body: body}
}

// serve hands rq to the handler with w (reset first) and returns the status.
func (s *benchServer) serve(w *benchWriter, rq *request) int {
	clear(w.h)
	w.status, w.body = 0, w.body[:0]
	r := new(http.Request)
	*r = *rq.template
	r.Header = rq.template.Header.Clone()
	r.Body = io.NopCloser(strings.NewReader(rq.body))
	s.h.ServeHTTP(w, r)
	return w.status
}

func BenchmarkHandlers(b *testing.B) {
	s := newBenchServer(b)
	update := `{"notificationDestination":"https://inv.example.com/cb2","securityInfo":[` +
		`{"aefId":"aef1","prefSecurityMethods":["OAUTH"]},{"aefId":"aef2","prefSecurityMethods":["PSK"]}]}`
	cases := []struct {
		name, method, target, caller, contentType, body string
		status                                          int
	}{
		{"token", http.MethodPost, Base + "/securities/inv2/token", "inv2", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=inv2&scope=3gpp%23aef1:alpha", 200},
		{"get", http.MethodGet, invokers + "inv2?authenticationInfo=true", "aef1", "", "", 200},
		{"update", http.MethodPost, invokers + "inv2/update", "inv2", "application/json", update, 200},
	}
	for _, c := range cases {
		rq := s.request(c.method, c.target, c.caller, c.contentType, c.body)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			w := &benchWriter{h: http.Header{}}
			for b.Loop() {
				if status := s.serve(w, rq); status != c.status {
					b.Fatalf("%d %s", status, w.body)
				}
			}
		})
	}
	// The token case again through httptest (request parsed from text, a recorder per request):
	// what the figures of the issue were first measured with.
	b.Run("token-httptest", func(b *testing.B) {
		c := cases[0]
		b.ReportAllocs()
		for b.Loop() {
			if w := s.do(c.method, c.target, c.caller, c.contentType, c.body); w.Code != c.status {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
	b.Run("token-parallel", func(b *testing.B) {
		c := cases[0]
		rq := s.request(c.method, c.target, c.caller, c.contentType, c.body)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := &benchWriter{h: http.Header{}}
			for pb.Next() {
				if status := s.serve(w, rq); status != c.status {
					b.Errorf("%d %s", status, w.body)
					return
				}
			}
		})
	})
}
