package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// serveError runs writeError inside the access log, as the handlers do, and returns the answer
// and the log.
func serveError(t *testing.T, err error) (*httptest.ResponseRecorder, string) {
	t.Helper()
	var logs bytes.Buffer
	l := &accessLog{logger: slog.New(slog.NewJSONHandler(&logs, nil)), requestID: func(*http.Request) string { return "rid" }}
	w := httptest.NewRecorder()
	l.serve(w, httptest.NewRequest("GET", "/x", nil), func(w http.ResponseWriter, r *http.Request) { writeError(w, r, err) })
	return w, logs.String()
}

func TestWriteErrorKinds(t *testing.T) {
	tests := []struct {
		kind   security.Kind
		status int
	}{
		{security.KindInvalid, 400},
		{security.KindUnauthenticated, 401},
		{security.KindForbidden, 403},
		{security.KindNotFound, 404},
		{security.KindTooLarge, 413},
		{security.KindUnavailable, 503},
		{0, 500},
		{99, 500},
	}
	for _, tt := range tests {
		params := []capif.InvalidParam{{Param: "/a", Reason: "r"}}
		err := fmt.Errorf("wrapped: %w", &security.Error{Kind: tt.kind, Cause: "SOME_CAUSE", Detail: "some detail", InvalidParams: params})
		w, _ := serveError(t, err)
		p := problem(t, w, tt.status, "SOME_CAUSE", "/a")
		if p.Detail != "some detail" {
			t.Errorf("kind %d: detail %q", tt.kind, p.Detail)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Errorf("kind %d: Retry-After without RetryAfter", tt.kind)
		}
		if cl, _ := strconv.Atoi(w.Header().Get("Content-Length")); cl != w.Body.Len() {
			t.Errorf("Content-Length %d for %d bytes", cl, w.Body.Len())
		}
	}
}

func TestWriteErrorOAuth(t *testing.T) {
	for _, tt := range []struct {
		kind   security.Kind
		status int
		code   string
	}{
		{security.KindInvalid, 400, capif.InvalidScope},
		{security.KindUnauthenticated, 401, capif.InvalidClient},
	} {
		w, _ := serveError(t, &security.Error{Kind: tt.kind, OAuthError: tt.code, Detail: "why", Cause: "IGNORED"})
		e := oauthErr(t, w, tt.status, tt.code)
		if e.ErrorDescription != "why" {
			t.Errorf("error_description %q", e.ErrorDescription)
		}
		var raw map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &raw)
		if _, ok := raw["cause"]; ok || len(raw) != 2 {
			t.Errorf("AccessTokenErr body %s", w.Body)
		}
	}
}

func TestWriteErrorUnavailable(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		retry string
	}{
		{"domain", security.Unavailable("busy"), "1"},
		{"domain, longer", &security.Error{Kind: security.KindUnavailable, Cause: security.CauseTemporarilyUnavail, RetryAfter: 7}, "7"},
		{"store sentinel", fmt.Errorf("dynamodb: ProvisionedThroughputExceeded: %w", security.ErrUnavailable), "1"},
		{"deadline", fmt.Errorf("kms sign: %w", context.DeadlineExceeded), "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, logs := serveError(t, tt.err)
			problem(t, w, 503, security.CauseTemporarilyUnavail)
			if got := w.Header().Get("Retry-After"); got != tt.retry {
				t.Errorf("Retry-After %q, want %q", got, tt.retry)
			}
			for _, secret := range []string{"dynamodb", "kms"} {
				if strings.Contains(w.Body.String(), secret) {
					t.Errorf("body shows internals: %s", w.Body)
				}
			}
			if strings.Contains(logs, `"level":"ERROR"`) {
				t.Errorf("a 503 is logged as an internal error: %s", logs)
			}
		})
	}
}

func TestWriteErrorInternal(t *testing.T) {
	err := fmt.Errorf("embedded store: load: %w", errors.New("bolt: database not open at /var/lib/capif/secret.db"))
	w, logs := serveError(t, err)
	p := problem(t, w, 500, "INTERNAL_ERROR")
	if strings.Contains(w.Body.String(), "bolt") || strings.Contains(w.Body.String(), "secret.db") || strings.Contains(p.Detail, "embedded") {
		t.Errorf("body shows internals: %s", w.Body)
	}
	var line map[string]any
	if e := json.Unmarshal([]byte(logs), &line); e != nil {
		t.Fatalf("log %q: %v", logs, e)
	}
	if line["level"] != "ERROR" || line["error"] != err.Error() || line["status"] != float64(500) {
		t.Errorf("log line %v", line)
	}
}

func TestWriteJSONEncodingFailure(t *testing.T) {
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, contentJSON, map[string]any{"x": make(chan int)})
	problem(t, w, 500, "ENCODING_FAILED")
}
