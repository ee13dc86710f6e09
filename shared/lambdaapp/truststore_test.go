package lambdaapp_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
)

// fakeS3 serves one object at /bucket/key (the SDK addresses an IP endpoint path-style) and
// counts requests. respond, when set, answers instead (status, body).
type fakeS3 struct {
	srv     *httptest.Server
	mu      sync.Mutex
	body    []byte
	paths   []string
	query   []url.Values
	respond func(n int) (int, string)
	hold    chan struct{} // when set, requests wait for it (or their cancellation)
}

func newFakeS3(t *testing.T, body []byte) *fakeS3 {
	t.Helper()
	s := &fakeS3{body: body}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.Method+" "+r.URL.Path)
		s.query = append(s.query, r.URL.Query())
		n, respond, hold := len(s.paths), s.respond, s.hold
		s.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		if respond != nil {
			if status, body := respond(n); status != 0 {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
				return
			}
		}
		if r.Method != http.MethodGet || r.URL.Path != "/trust-bucket/mtls/truststore.pem" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`<Error><Code>NoSuchKey</Code></Error>`))
			return
		}
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.srv.Close)
	// A hermetic SDK environment: this endpoint, static test credentials, no shared files.
	dir := t.TempDir()
	t.Setenv("AWS_ENDPOINT_URL_S3", s.srv.URL)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return s
}

func (s *fakeS3) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

func (s *fakeS3) queries() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.query...)
}

// countCalls is an AWS middleware counting every SDK operation started.
func countCalls(n *atomic.Int64) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			n.Add(1)
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	}
}

func s3Fixture(t *testing.T) (*fixture, *fakeS3) {
	t.Helper()
	fx := newFixture(t)
	fx.cfg.Truststore = lambdaapp.Location{Bucket: "trust-bucket", Key: "mtls/truststore.pem"}
	return fx, newFakeS3(t, fx.ca.PEM)
}

func jwksRequest() apigwevent.Request {
	return apigwevent.Request{Method: http.MethodGet, Resource: "/.well-known/jwks.json"}
}

// New makes no AWS call; the truststore is read from S3 on the first request and never again.
func TestTruststoreIsReadLazilyOnceFromS3(t *testing.T) {
	fx, s3 := s3Fixture(t)
	var calls atomic.Int64
	f := fx.function(t, httpapi.All, lambdaapp.Options{AWSAPIOptions: []func(*middleware.Stack) error{countCalls(&calls)}})
	if n := calls.Load(); n != 0 || len(s3.requests()) != 0 {
		t.Fatalf("init made %d AWS calls, %v", n, s3.requests())
	}
	invoker := fx.certs["invoker-1"]
	put := apigwevent.Request{Method: http.MethodPut, Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
		Header: jsonHeader(), Body: putBody("aef-1", "api-qos-session", "PKI"), ClientCertPEM: invoker}
	wantStatus(t, invoke(t, f, put), http.StatusCreated)
	for range 3 {
		wantStatus(t, invoke(t, f, jwksRequest()), http.StatusOK)
	}
	if got := s3.requests(); len(got) != 1 || got[0] != "GET /trust-bucket/mtls/truststore.pem" {
		t.Fatalf("S3 requests %v, want one GetObject of the truststore", got)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d AWS calls, want 1 (the embedded store and local key make none)", n)
	}
}

func TestTruststoreFailures(t *testing.T) {
	t.Run("S3 unavailable: 503 with Retry-After, then served once S3 answers", func(t *testing.T) {
		fx, s3 := s3Fixture(t)
		s3.respond = func(n int) (int, string) {
			if n <= 3 { // every attempt of the first request (the SDK tries 3 times)
				return http.StatusServiceUnavailable, `<Error><Code>SlowDown</Code></Error>`
			}
			return 0, ""
		}
		f := fx.function(t, httpapi.All, lambdaapp.Options{})
		resp := invoke(t, f, jwksRequest())
		wantStatus(t, resp, http.StatusServiceUnavailable)
		if header(resp, "Retry-After") == "" {
			t.Error("no Retry-After")
		}
		// Answered by the access log like any request: one line, a counted 5xx.
		if lines := accessLines(t, fx.logs.String()); len(lines) != 1 || lines[0].Status != http.StatusServiceUnavailable || lines[0].ServerErrors != 1 ||
			lines[0].RequestID != header(resp, "X-Request-Id") {
			t.Errorf("access lines %+v", lines)
		}
		wantStatus(t, invoke(t, f, jwksRequest()), http.StatusOK)
		if n := len(s3.requests()); n != 4 {
			t.Errorf("%d S3 requests, want 3 attempts + 1", n)
		}
	})
	t.Run("access denied is a configuration fault: 500", func(t *testing.T) {
		fx, s3 := s3Fixture(t)
		s3.respond = func(int) (int, string) { return http.StatusForbidden, `<Error><Code>AccessDenied</Code></Error>` }
		f := fx.function(t, httpapi.All, lambdaapp.Options{})
		wantStatus(t, invoke(t, f, jwksRequest()), http.StatusInternalServerError)
		if !strings.Contains(fx.logs.String(), "AccessDenied") {
			t.Errorf("the cause is not logged: %s", fx.logs.String())
		}
		if lines := accessLines(t, fx.logs.String()); len(lines) != 1 || lines[0].Status != http.StatusInternalServerError || lines[0].Level != "ERROR" {
			t.Errorf("access lines %+v", lines)
		}
	})
	t.Run("a bundle without a root: 500", func(t *testing.T) {
		fx, s3 := s3Fixture(t)
		s3.body = []byte(fx.certs["aef-1"]) // a leaf only
		f := fx.function(t, httpapi.All, lambdaapp.Options{})
		wantStatus(t, invoke(t, f, jwksRequest()), http.StatusInternalServerError)
	})
}

// An AWS call that outlives the request budget ends in a 503 before the Lambda deadline.
func TestDeadlineMarginTurnsSlowAWSIntoA503(t *testing.T) {
	fx, s3 := s3Fixture(t)
	s3.hold = make(chan struct{}) // S3 never answers
	t.Cleanup(func() { close(s3.hold) })
	fx.cfg.Settings.DeadlineMargin = 700 * time.Millisecond
	f := fx.function(t, httpapi.All, lambdaapp.Options{})
	ev, _ := jwksRequest().Event()
	payload, _ := json.Marshal(ev)
	start := time.Now()
	resp := invokeRaw(t, f, payload, time.Second) // the Lambda deadline: 1 s
	took := time.Since(start)
	wantStatus(t, resp, http.StatusServiceUnavailable)
	if took < 250*time.Millisecond || took > 700*time.Millisecond {
		t.Errorf("answered after %v; want about 300 ms (deadline 1 s − margin 700 ms)", took)
	}
}

func TestRequestContext(t *testing.T) {
	dl := time.Now().Add(10 * time.Second)
	parent, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	ctx, cancel2 := lambdaapp.RequestContext(parent, 1500*time.Millisecond)
	defer cancel2()
	got, ok := ctx.Deadline()
	if !ok || !got.Equal(dl.Add(-1500*time.Millisecond)) {
		t.Errorf("deadline %v (%v), want %v", got, ok, dl.Add(-1500*time.Millisecond))
	}
	ctx3, cancel3 := lambdaapp.RequestContext(context.Background(), time.Second)
	defer cancel3()
	if _, ok := ctx3.Deadline(); ok {
		t.Error("a deadline appeared where there was none")
	}
}

func TestParseTruststore(t *testing.T) {
	root, err := devpki.NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	other, err := devpki.NewCA("other root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Client("aef-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, root.PEM...), other.PEM...)
	ts, err := lambdaapp.ParseTruststore(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if string(ts.PEM) != string(bundle) {
		t.Error("PEM is not the bundle as read")
	}
	if _, err := httpapi.VerifyPEM(leaf.CertPEM, ts.Roots, ts.Intermediates, time.Now()); err != nil {
		t.Errorf("a leaf of a bundled root does not verify: %v", err)
	}
	onlyOther, err := lambdaapp.ParseTruststore(other.PEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpapi.VerifyPEM(leaf.CertPEM, onlyOther.Roots, onlyOther.Intermediates, time.Now()); err == nil {
		t.Error("a leaf verified against a bundle without its root")
	}
	if want := rootPool(t, root.PEM, other.PEM); !ts.Roots.Equal(want) {
		t.Error("the roots are not exactly the bundle's two CAs")
	}
	for name, b := range map[string]string{
		"empty":         "",
		"leaf only":     string(leaf.CertPEM),
		"a private key": string(leaf.KeyPEM) + string(root.PEM),
		"garbage block": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + string(root.PEM),
	} {
		if _, err := lambdaapp.ParseTruststore([]byte(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// rootPool is a pool of the certificates of the PEM bundles.
func rootPool(t *testing.T, bundles ...[]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, b := range bundles {
		if !p.AppendCertsFromPEM(b) {
			t.Fatal("no certificate in a bundle")
		}
	}
	return p
}
