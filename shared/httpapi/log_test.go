package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/security"
)

// captureHandler keeps every record it is given.
type captureHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// access returns the attributes of the access log lines ("request").
func (h *captureHandler) access() []map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range h.records {
		if r.Message != "request" {
			continue
		}
		m := map[string]slog.Value{"level": slog.StringValue(r.Level.String())}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
		out = append(out, m)
	}
	return out
}

func (h *captureHandler) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.records {
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.Key + "=" + a.Value.String()); return true })
		b.WriteByte('\n')
	}
	return b.String()
}

func TestAccessLog(t *testing.T) {
	s := newServer(t, nil)
	h := &captureHandler{}
	opts := s.opts
	opts.Logger = slog.New(h)
	n := 0
	opts.RequestID = func(*http.Request) string { n++; return "req-" + string(rune('0'+n)) }
	s.h = All(s.svc, opts)

	created := s.mustCreate("inv1")
	psk := created.SecurityInfo[1].AuthenticationInfo
	tests := []struct {
		method, target, caller, ct, body string
		op                               string
		status                           int
		level                            string
	}{
		{"GET", invokers + "inv1?authenticationInfo=true", "aef2", "", "", OpObtainAPIInvokerInfo, 200, "INFO"},
		{"POST", Base + "/securities/inv1/token", "inv1", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=inv1&client_secret=" + inv1Secret, OpObtainAuthorization, 200, "INFO"},
		{"POST", Base + "/securities/inv1/token", "inv1", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=inv1&client_secret=wrong-" + inv1Secret, OpObtainAuthorization, 401, "INFO"},
		{"DELETE", invokers + "inv1", "aef3", "", "", OpRevokeAuthorization, 404, "INFO"},
		{"POST", invokers + "inv1/update", "stranger", "application/json", "{}", OpObtainSecurityMethod, 401, "INFO"},
		{"GET", "/.well-known/jwks.json", "", "", "", OpJWKS, 200, "INFO"},
		{"GET", MetadataPath, "", "", "", OpMetadata, 200, "INFO"},
		{"GET", Base + "/nowhere", "inv1", "", "", "", 404, "INFO"},
		{"PATCH", invokers + "inv1", "inv1", "", "", "", 405, "INFO"},
		{"DELETE", invokers + "inv1", "aef1", "", "", OpRevokeAuthorization, 204, "INFO"},
	}
	for i, tt := range tests {
		w := s.do(tt.method, tt.target, tt.caller, tt.ct, tt.body)
		if w.Code != tt.status {
			t.Fatalf("%s %s: %d %s", tt.method, tt.target, w.Code, w.Body)
		}
		lines := h.access()
		if len(lines) != i+2 {
			t.Fatalf("%d access lines after %d requests", len(lines), i+2)
		}
		l := lines[i+1]
		wantID := "req-" + string(rune('0'+i+2)) // mustCreate used req-1
		if l["requestId"].String() != wantID || w.Header().Get("X-Request-Id") != wantID {
			t.Errorf("request %d: requestId %q, header %q, want %q", i, l["requestId"], w.Header().Get("X-Request-Id"), wantID)
		}
		if l["operation"].String() != tt.op || l["status"].Int64() != int64(tt.status) || l["level"].String() != tt.level {
			t.Errorf("%s %s: line %v", tt.method, tt.target, l)
		}
		if l["method"].String() != tt.method || !strings.HasPrefix(tt.target, l["path"].String()) {
			t.Errorf("method/path %v", l)
		}
		wantCaller := tt.caller
		if tt.op == "" {
			wantCaller = "" // unrouted: no handler looked at the certificate
		}
		if l["caller"].String() != wantCaller {
			t.Errorf("%s %s: caller %q, want %q", tt.method, tt.target, l["caller"], wantCaller)
		}
		if d := l["durationMs"]; d.Kind() != slog.KindFloat64 || d.Float64() < 0 || d.Float64() > float64(time.Minute/time.Millisecond) {
			t.Errorf("durationMs %v", d)
		}
		if _, ok := l["error"]; ok {
			t.Errorf("error attribute on a non-500: %v", l)
		}
	}
	logged := h.all()
	for _, secret := range []string{psk, inv1Secret, "signed.inv1"} {
		if strings.Contains(logged, secret) {
			t.Errorf("the log holds a secret %q:\n%s", secret, logged)
		}
	}
}

func TestAccessLogInternalError(t *testing.T) {
	s := newServer(t, nil)
	h := &captureHandler{}
	opts := s.opts
	opts.Logger = slog.New(h)
	s.h = All(s.svc, opts)
	s.signer.err = errors.New("signing key file unreadable")
	s.mustCreate("inv1")
	w := s.do("POST", Base+"/securities/inv1/token", "inv1", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=inv1&client_secret="+inv1Secret)
	problem(t, w, 500, "INTERNAL_ERROR")
	lines := h.access()
	l := lines[len(lines)-1]
	if l["level"].String() != "ERROR" || l["error"].String() != "signing key file unreadable" || l["status"].Int64() != 500 || l["caller"].String() != "inv1" {
		t.Errorf("line %v", l)
	}
	if strings.Contains(w.Body.String(), "signing key") {
		t.Errorf("body %s", w.Body)
	}
}

func TestDefaultOptions(t *testing.T) {
	s := newServer(t, nil)
	h := &captureHandler{}
	prev := slog.Default()
	defer slog.SetDefault(prev)
	slog.SetDefault(slog.New(h))
	rt := All(s.svc, Options{APIRoot: apiRoot}) // default logger, request ids and certificate source
	var ids []string
	for range 2 {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, s.req("DELETE", invokers+"inv1", "aef1", "", ""))
		problem(t, w, 404, security.CauseContextNotFound)
		ids = append(ids, w.Header().Get("X-Request-Id"))
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(ids[0]) || ids[0] == ids[1] {
		t.Errorf("request ids %q", ids)
	}
	lines := h.access()
	if len(lines) != 2 || lines[0]["caller"].String() != "aef1" || lines[0]["requestId"].String() != ids[0] {
		t.Errorf("default logger got %v", lines)
	}
}
