package notify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

var _ security.Notifier = (*Notifier)(nil)

// secretPath stands for a destination path and query that carry a token; no error or log
// record may contain it.
const secretPath = "/callbacks/inv-1?token=s3cret"

func newNotifier(t *testing.T, o Options) (*Notifier, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(o), &logs
}

func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, "s3cret") || strings.Contains(s, "/callbacks") {
		t.Errorf("%s leaks the destination path or query: %q", what, s)
	}
}

// recorder is a loopback listener that keeps what it received.
type recorder struct {
	mu     sync.Mutex
	hits   int
	method string
	ctype  string
	uri    string
	body   []byte
}

func (r *recorder) handler(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.hits++
		r.method, r.ctype, r.uri, r.body = req.Method, req.Header.Get("Content-Type"), req.RequestURI, b
		r.mu.Unlock()
		w.WriteHeader(status)
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits
}

func TestNotifyDeliversJSON(t *testing.T) {
	revocation := capif.SecurityNotification{APIInvokerID: "inv-1", AefID: "aef-1", APIIDs: []string{"api-1", "api-2"}, Cause: "UNEXPECTED_REASON"}
	test := capif.TestNotification{Subscription: "https://ccf.example/capif-security/v1/trustedInvokers/inv-1"}
	tests := []struct {
		name   string
		tls    bool
		status int
		body   any
	}{
		{"revocation over http, 204", false, http.StatusNoContent, revocation},
		{"test notification over http, 200", false, http.StatusOK, test},
		{"revocation over https, 204", true, http.StatusNoContent, revocation},
		{"test notification over https, 202", true, http.StatusAccepted, test},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			var srv *httptest.Server
			if tt.tls {
				srv = httptest.NewTLSServer(rec.handler(tt.status))
			} else {
				srv = httptest.NewServer(rec.handler(tt.status))
			}
			defer srv.Close()
			n, logs := newNotifier(t, Options{AllowLoopback: true})
			if tt.tls {
				// Trust the test server's certificate only; the handshake still goes through
				// the guarded dialer.
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				n.client.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool
			}

			if err := n.Notify(context.WithoutCancel(context.Background()), security.Delivery{ID: "n-1", Destination: srv.URL + secretPath, Body: tt.body}); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			want, _ := json.Marshal(tt.body)
			if rec.count() != 1 || rec.method != http.MethodPost || rec.ctype != "application/json" || rec.uri != secretPath {
				t.Errorf("server saw %d request(s), last %s %s with Content-Type %q", rec.hits, rec.method, rec.uri, rec.ctype)
			}
			if !bytes.Equal(rec.body, want) {
				t.Errorf("body = %s, want %s", rec.body, want)
			}
			assertNoSecret(t, "log", logs.String())
		})
	}
}

func TestNotifyRefusesLoopbackUnlessAllowed(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec.handler(http.StatusNoContent))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	tests := []struct {
		name string
		dest string
		want string
	}{
		{"IPv4 literal", srv.URL, "destination 127.0.0.1 is a loopback address; refused"},
		{"name resolving to loopback", "http://localhost:" + port, "destination localhost resolves to 127.0.0.1, a loopback address; refused"},
		{"mapped IPv4 literal", "http://[::ffff:127.0.0.1]:" + port, "loopback address"},
		{"unspecified address", "http://0.0.0.0:" + port, "unspecified address; refused"},
		{"https", "https://127.0.0.1:" + port, "loopback address; refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := newNotifier(t, Options{})
			err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: tt.dest + secretPath, Body: capif.TestNotification{Subscription: "x"}})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Notify = %v, want a refusal containing %q", err, tt.want)
			}
			assertNoSecret(t, "error", err.Error())
			if rec.count() != 0 {
				t.Errorf("the listener received %d request(s)", rec.count())
			}
		})
	}

	// The same listener is reachable once loopback is allowed, so the refusals above are the
	// guard's doing and not a broken listener.
	n, _ := newNotifier(t, Options{AllowLoopback: true})
	if err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: "http://localhost:" + port + secretPath, Body: capif.TestNotification{Subscription: "x"}}); err != nil {
		t.Fatalf("with AllowLoopback: %v", err)
	}
}

func TestNotifyRefusesMetadataEndpoint(t *testing.T) {
	// The guard runs before connect(), so nothing leaves the host even where this address is
	// routable.
	n, _ := newNotifier(t, Options{AllowLoopback: true})
	for _, dest := range []string{
		"http://169.254.169.254/latest/api/token?token=s3cret",
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://10.1.2.3:8080/callbacks",
	} {
		err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: dest, Body: capif.TestNotification{Subscription: "x"}})
		var re *RefusedError
		if !errors.As(err, &re) {
			// fd00:ec2::254 needs an IPv6 socket before the guard can run; without IPv6 the
			// socket call fails first, which also delivers nothing.
			if strings.Contains(dest, "fd00") && errors.Is(err, syscall.EAFNOSUPPORT) {
				t.Logf("%s: %v (no IPv6 here)", dest, err)
				continue
			}
			t.Errorf("Notify(%s) = %v, want a *RefusedError", dest, err)
			continue
		}
		assertNoSecret(t, "error", err.Error())
	}
}

func TestNotifyRejectsMalformedDestinations(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec.handler(http.StatusNoContent))
	defer srv.Close()
	hostport := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct{ dest, want string }{
		{"", "scheme"},
		{"ftp://" + hostport + secretPath, "scheme"},
		{"file:///etc/passwd", "scheme"},
		{"mailto:s3cret@example.com", "scheme"},
		{"http:" + hostport + secretPath, "no host"},
		{"http:///callbacks/s3cret", "no host"},
		{"http://user:s3cret@" + hostport + "/", "user information"},
		{"http://%zz" + secretPath, "not a valid URI"},
	}
	for _, tt := range tests {
		n, _ := newNotifier(t, Options{AllowLoopback: true})
		err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: tt.dest, Body: capif.TestNotification{Subscription: "x"}})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Notify(%q) = %v, want ErrRefused mentioning %q", tt.dest, err, tt.want)
			continue
		}
		assertNoSecret(t, "error", err.Error())
	}
	if rec.count() != 0 {
		t.Errorf("the listener received %d request(s)", rec.count())
	}
}

func TestNotifyDoesNotFollowRedirects(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound, http.StatusMovedPermanently, http.StatusSeeOther} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			target := &recorder{}
			other := httptest.NewServer(target.handler(http.StatusNoContent))
			defer other.Close()
			redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+secretPath, code)
			}))
			defer redirector.Close()

			n, logs := newNotifier(t, Options{AllowLoopback: true})
			err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: redirector.URL + secretPath, Body: capif.TestNotification{Subscription: "x"}})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code || !strings.Contains(err.Error(), "not followed") {
				t.Fatalf("Notify = %v, want a *StatusError with %d saying redirects are not followed", err, code)
			}
			if target.count() != 0 {
				t.Errorf("the redirect target received %d request(s)", target.count())
			}
			if !strings.Contains(logs.String(), "redirected") || !strings.Contains(logs.String(), "location="+other.URL) {
				t.Errorf("no redirect warning naming the target host in the log: %s", logs.String())
			}
			assertNoSecret(t, "error", err.Error())
			assertNoSecret(t, "log", logs.String())
		})
	}
}

func TestNotifyNon2xxIsAFailure(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, `{"status":0,"detail":"s3cret detail"}`)
		}))
		n, _ := newNotifier(t, Options{AllowLoopback: true})
		err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: srv.URL + secretPath, Body: capif.TestNotification{Subscription: "x"}})
		srv.Close()
		var se *StatusError
		if !errors.As(err, &se) || se.Code != code {
			t.Errorf("status %d: Notify = %v, want a *StatusError", code, err)
			continue
		}
		if want := "destination answered " + strconv.Itoa(code) + " " + http.StatusText(code); err.Error() != want {
			t.Errorf("status %d: error %q, want %q", code, err, want)
		}
		// The answer's body is the destination's; it stays out of our errors.
		assertNoSecret(t, "error", err.Error())
	}
}

func TestNotifyDrainsBoundedBody(t *testing.T) {
	// An endless 200 body must neither be read to the end nor turn a delivered notification
	// into a failure.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	n, _ := newNotifier(t, Options{AllowLoopback: true, Timeout: 5 * time.Second})
	start := time.Now()
	if err := n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: srv.URL, Body: capif.TestNotification{Subscription: "x"}}); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s; the drain is not bounded by size", d)
	}
}

func TestNotifyTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
		wantErr bool
	}{
		{"no answer at all", func(_ http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			select {
			case <-r.Context().Done():
			case <-release:
			case <-time.After(10 * timeout): // so a broken timeout fails the test instead of hanging it
			}
		}, true},
		// The status decides the outcome; a body that never ends only costs the timeout.
		{"2xx header then a stalled body", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			case <-time.After(10 * timeout): // so a broken timeout fails the test instead of hanging it
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.handler(w, r, release) }))
			defer srv.Close()
			defer close(release)

			n, _ := newNotifier(t, Options{AllowLoopback: true, Timeout: timeout})
			// A detached context, as the service passes: only the notifier's timeout bounds it.
			ctx := context.WithoutCancel(context.Background())
			start := time.Now()
			err := n.Notify(ctx, security.Delivery{ID: "n-1", Destination: srv.URL + secretPath, Body: capif.TestNotification{Subscription: "x"}})
			elapsed := time.Since(start)
			// The stall lasts 10× the timeout; 5× leaves room for a loaded machine (CI shares two
			// cores) while a broken timeout still fails.
			if elapsed > 5*timeout {
				t.Errorf("Notify took %s with a %s timeout", elapsed, timeout)
			}
			if !tt.wantErr {
				if err != nil {
					t.Errorf("Notify = %v, want nil", err)
				}
				return
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "within 300ms") {
				t.Fatalf("Notify = %v, want a deadline error naming the timeout", err)
			}
			assertNoSecret(t, "error", err.Error())
		})
	}
}

func TestNotifyTransportFailure(t *testing.T) {
	// A closed port: the error says what failed without the URL.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	n, _ := newNotifier(t, Options{AllowLoopback: true})
	err = n.Notify(context.Background(), security.Delivery{ID: "n-1", Destination: "http://" + addr + secretPath, Body: capif.TestNotification{Subscription: "x"}})
	if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "POST to destination failed") {
		t.Fatalf("Notify = %v, want a transport failure", err)
	}
	assertNoSecret(t, "error", err.Error())
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, DefaultTimeout},
		{-time.Second, DefaultTimeout},
		{500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		n := New(Options{Timeout: tt.in})
		if n.timeout != tt.want {
			t.Errorf("Timeout %s: got %s, want %s", tt.in, n.timeout, tt.want)
		}
		tr := n.client.Transport.(*http.Transport)
		// A proxy from the environment would make the connection outside the guard.
		//lint:ignore SA1019 the deprecated hooks are checked to be unset: net/http would still use DialTLS
		if tr.Proxy != nil || tr.DialContext == nil || tr.DialTLSContext != nil || tr.DialTLS != nil || tr.Dial != nil {
			t.Errorf("transport must dial itself through the guard: %+v", tr)
		}
		if n.client.CheckRedirect == nil || n.log == nil {
			t.Errorf("redirect policy or logger missing")
		}
	}
}

func TestCheckDestination(t *testing.T) {
	for _, tc := range []struct {
		dest     string
		loopback bool
		refused  bool
	}{
		{"https://invoker.example.com/cb", false, false}, // names are judged at dial time
		{"http://localhost:9090/cb", false, false},
		{"http://169.254.169.254/latest/meta-data", false, true},
		{"http://[::ffff:169.254.169.254]/x", true, true},
		{"http://10.0.0.7/cb", true, true},
		{"http://127.0.0.1:9090/cb", false, true},
		{"http://127.0.0.1:9090/cb", true, false},
		{"https://198.51.100.7/cb", false, true}, // documentation range
		{"https://8.8.8.8/cb", false, false},
		{"ftp://invoker.example.com/cb", false, true},
		{"https://user:pw@invoker.example.com/cb", false, true},
	} {
		err := New(Options{AllowLoopback: tc.loopback}).CheckDestination(tc.dest)
		if got := err != nil; got != tc.refused {
			t.Errorf("%s (loopback %v): error %v, want refused=%v", tc.dest, tc.loopback, err, tc.refused)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v does not match ErrRefused", tc.dest, err)
		}
	}
}

// Every attempt carries the notification's id (receivers de-duplicate on it) and a timestamp;
// 410 Gone and a refused destination are undeliverable (dead-lettered at once), other
// failures are not.
func TestDeliveryHeadersAndUndeliverable(t *testing.T) {
	var gotID, gotTS string
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotID, gotTS = r.Header.Get(HeaderID), r.Header.Get(HeaderTimestamp)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	n, _ := newNotifier(t, Options{AllowLoopback: true})
	d := security.Delivery{ID: "owed-42", Destination: srv.URL + "/cb", Body: capif.TestNotification{Subscription: "x"}}
	if err := n.Notify(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if ts, err := strconv.ParseInt(gotTS, 10, 64); gotID != "owed-42" || err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
		t.Errorf("headers webhook-id %q webhook-timestamp %q", gotID, gotTS)
	}
	for code, undeliverable := range map[int]bool{http.StatusGone: true, http.StatusServiceUnavailable: false, http.StatusNotFound: false, http.StatusBadRequest: false} {
		status = code
		err := n.Notify(context.Background(), d)
		if err == nil || errors.Is(err, security.ErrUndeliverable) != undeliverable {
			t.Errorf("%d: %v, undeliverable %v", code, err, undeliverable)
		}
	}
	strict, _ := newNotifier(t, Options{})
	if err := strict.Notify(context.Background(), d); !errors.Is(err, security.ErrUndeliverable) || !errors.Is(err, ErrRefused) {
		t.Errorf("loopback refused: %v, want ErrRefused matching ErrUndeliverable", err)
	}
}
