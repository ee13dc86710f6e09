package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
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
		{method: "GET", target: invokers + "inv1?authenticationInfo=true", caller: "aef2", op: security.ObtainAPIInvokerInfo.String(), status: 200, level: "INFO"},
		{method: "POST", target: Base + "/securities/inv1/token", caller: "inv1", ct: "application/x-www-form-urlencoded", body: "grant_type=client_credentials&client_id=inv1&client_secret=" + inv1Secret, op: security.ObtainAuthorization.String(), status: 200, level: "INFO"},
		{method: "POST", target: Base + "/securities/inv1/token", caller: "inv1", ct: "application/x-www-form-urlencoded", body: "grant_type=client_credentials&client_id=inv1&client_secret=wrong-" + inv1Secret, op: security.ObtainAuthorization.String(), status: 401, level: "INFO"},
		{method: "DELETE", target: invokers + "inv1", caller: "aef3", op: security.RevokeAuthorization.String(), status: 404, level: "INFO"},
		{method: "POST", target: invokers + "inv1/update", caller: "stranger", ct: "application/json", body: "{}", op: security.ObtainSecurityMethod.String(), status: 401, level: "INFO"},
		{method: "GET", target: "/.well-known/jwks.json", op: NameJWKS, status: 200, level: "INFO"},
		{method: "GET", target: MetadataPath, op: NameMetadata, status: 200, level: "INFO"},
		{method: "GET", target: Base + "/nowhere", caller: "inv1", status: 404, level: "INFO"},
		{method: "PATCH", target: invokers + "inv1", caller: "inv1", status: 405, level: "INFO"},
		{method: "DELETE", target: invokers + "inv1", caller: "aef1", op: security.RevokeAuthorization.String(), status: 204, level: "INFO"},
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
	s.signer.Err = errors.New("signing key file unreadable")
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

// published is what one access log line publishes, by metric name, for dimension set dims
// (names joined by ","; "" for the total).
func published(t *testing.T, line []byte) (map[string]map[string]float64, map[string]string) {
	t.Helper()
	ps, err := emftest.Parse(line)
	if err != nil {
		t.Fatalf("not EMF CloudWatch accepts: %v\n%s", err, line)
	}
	// No two members differ only in case: decoders that match names case-insensitively (Go's
	// encoding/json) would read one for the other.
	var members map[string]json.RawMessage
	_ = json.Unmarshal(line, &members)
	folded := map[string]string{}
	for k := range members {
		if other, ok := folded[strings.ToLower(k)]; ok {
			t.Errorf("members %q and %q differ only in case: %s", k, other, line)
		}
		folded[strings.ToLower(k)] = k
	}
	out := map[string]map[string]float64{}
	dims := map[string]string{}
	for _, p := range ps {
		if p.Namespace != testNamespace {
			t.Errorf("namespace %q", p.Namespace)
		}
		var names []string
		for n, v := range p.Dimensions {
			names = append(names, n)
			dims[n] = v
		}
		slices.Sort(names)
		if out[p.Name] == nil {
			out[p.Name] = map[string]float64{}
		}
		out[p.Name][strings.Join(names, ",")] = p.Value
	}
	return out, dims
}

func lastLine(t *testing.T, logs fmt.Stringer) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"msg":"request"`) {
			return []byte(lines[i])
		}
	}
	t.Fatalf("no access line in %s", logs)
	return nil
}

func TestAccessLogMetrics(t *testing.T) {
	s := newServer(t, nil)
	token := func(secret string) func() *httptest.ResponseRecorder {
		return func() *httptest.ResponseRecorder {
			return s.do("POST", Base+"/securities/inv1/token", "inv1", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=inv1&client_secret="+secret)
		}
	}
	brokenBody := func() *httptest.ResponseRecorder {
		r := s.req("PUT", invokers+"inv2", "inv2", "application/json", "")
		r.Body = io.NopCloser(failingReader{})
		return s.serve(r)
	}
	body, _ := json.Marshal(createBody())
	tests := []struct {
		name   string
		do     func() *httptest.ResponseRecorder
		status int
		op     string
		want   map[string]float64 // by Operation and in total
		denial string             // the OAuthError dimension of TokenDenials
	}{
		{name: "create", do: func() *httptest.ResponseRecorder { return s.json("PUT", invokers+"inv1", "inv1", createBody()) }, status: 201, op: security.ObtainSecurityMethod.String(), want: map[string]float64{metrics.Requests: 1, metrics.ClientErrors: 0, metrics.ServerErrors: 0, metrics.ContextsCreated: 1, metrics.ContextsUpdated: 0}},
		{name: "update", do: func() *httptest.ResponseRecorder {
			return s.do("POST", invokers+"inv1/update", "inv1", "application/json", string(body))
		}, status: 200, op: security.ObtainSecurityMethod.String(), want: map[string]float64{metrics.Requests: 1, metrics.ContextsCreated: 0, metrics.ContextsUpdated: 1}},
		{name: "token", do: token(inv1Secret), status: 200, op: security.ObtainAuthorization.String(), want: map[string]float64{metrics.TokensIssued: 1, metrics.ClientErrors: 0}},
		{name: "token denied", do: token("wrong"), status: 401, op: security.ObtainAuthorization.String(), want: map[string]float64{metrics.TokensIssued: 0, metrics.ClientErrors: 1, metrics.ServerErrors: 0}, denial: "invalid_client"},
		{name: "server fault", do: func() *httptest.ResponseRecorder {
			s.signer.Err = errors.New("key unreadable")
			defer func() { s.signer.Err = nil }()
			return token(inv1Secret)()
		}, status: 500, op: security.ObtainAuthorization.String(), want: map[string]float64{metrics.ClientErrors: 0, metrics.ServerErrors: 1, metrics.TokensIssued: 0}},
		{name: "jwks", do: func() *httptest.ResponseRecorder { return s.do("GET", "/.well-known/jwks.json", "", "", "") }, status: 200, op: NameJWKS, want: map[string]float64{metrics.Requests: 1}},
		{name: "revoke", do: func() *httptest.ResponseRecorder { return s.do("DELETE", invokers+"inv1", "aef1", "", "") }, status: 204, op: security.RevokeAuthorization.String(), want: map[string]float64{metrics.Revocations: 1, metrics.ClientErrors: 0}},
		{name: "revoke nothing", do: func() *httptest.ResponseRecorder { return s.do("DELETE", invokers+"inv1", "aef1", "", "") }, status: 404, op: security.RevokeAuthorization.String(), want: map[string]float64{metrics.Revocations: 0, metrics.ClientErrors: 1}},
		{name: "unrouted", do: func() *httptest.ResponseRecorder { return s.do("GET", Base+"/nowhere", "inv1", "", "") }, status: 404, want: map[string]float64{metrics.Requests: 1, metrics.ClientErrors: 1, metrics.ServerErrors: 0}},
		{name: "broken body: the client's fault", do: brokenBody, status: 400, op: security.ObtainSecurityMethod.String(), want: map[string]float64{metrics.ClientErrors: 1, metrics.ServerErrors: 0, metrics.ContextsCreated: 0}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		w := tt.do()
		if w.Code != tt.status {
			t.Fatalf("%s: %d %s", tt.name, w.Code, w.Body)
		}
		got, dims := published(t, lastLine(t, s.logs))
		if dims[metrics.DimOperation] != tt.op {
			t.Errorf("%s: operation %q, want %q", tt.name, dims[metrics.DimOperation], tt.op)
		}
		sets := 2 // by operation and in total
		if tt.op == "" {
			sets = 1 // unrouted: in total only
		}
		for name, v := range tt.want {
			if len(got[name]) != sets || got[name][""] != v || tt.op != "" && got[name][metrics.DimOperation] != v {
				t.Errorf("%s: %s = %v, want %v by operation and in total", tt.name, name, got[name], v)
			}
		}
		if l := got[metrics.Latency]; len(l) != sets || l[""] < 0 {
			t.Errorf("%s: Latency %v", tt.name, l)
		}
		if d := got[metrics.TokenDenials]; (tt.denial == "") != (d == nil) || d != nil && (d[metrics.DimOAuthError] != 1 || d[""] != 1 || dims[metrics.DimOAuthError] != tt.denial) {
			t.Errorf("%s: TokenDenials %v, OAuthError %q, want %q", tt.name, d, dims[metrics.DimOAuthError], tt.denial)
		}
		for n := range dims {
			if n != metrics.DimOperation && n != metrics.DimOAuthError {
				t.Errorf("%s: unbounded dimension %q", tt.name, n)
			}
		}
		for name := range got {
			if !slices.Contains(metrics.Names, name) {
				t.Errorf("%s: metric %q is not in metrics.Names", tt.name, name)
			}
			seen[name] = true
		}
	}

	// Throttled attempts counted by the adapters through the request's context.
	var buf bytes.Buffer
	l := &accessLog{logger: slog.New(slog.NewJSONHandler(&buf, nil)), requestID: RandomRequestID, namespace: testNamespace}
	l.serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil), func(w http.ResponseWriter, r *http.Request) {
		infoOf(r).operation = NameJWKS
		metrics.Add(r.Context(), metrics.KMSThrottles, 2)
		metrics.Add(r.Context(), metrics.DynamoDBThrottles, 1)
	})
	got, _ := published(t, buf.Bytes())
	if got[metrics.KMSThrottles][""] != 2 || got[metrics.DynamoDBThrottles][metrics.DimOperation] != 1 {
		t.Errorf("throttles %v %v", got[metrics.KMSThrottles], got[metrics.DynamoDBThrottles])
	}
	for name := range got {
		seen[name] = true
	}
	// Every metric of the request path is really emitted (the worker emits the others).
	for _, name := range metrics.AccessLogNames {
		if !seen[name] {
			t.Errorf("metric %q is never emitted by the access log", name)
		}
	}
}

// testNamespace is the metrics namespace of the test servers.
const testNamespace = "Test/CAPIF"

// The metrics go under the namespace of the options; without one the line carries none (the
// settings always give one).
func TestAccessLogNamespace(t *testing.T) {
	for _, namespace := range []string{"Operator/Chosen", ""} {
		s := newServer(t, nil)
		opts := s.opts
		opts.MetricsNamespace = namespace
		s.h = All(s.svc, opts)
		s.do("GET", "/.well-known/jwks.json", "", "", "")
		line := lastLine(t, s.logs)
		if namespace == "" {
			if bytes.Contains(line, []byte(`"_aws"`)) || !bytes.Contains(line, []byte(`"status":200`)) {
				t.Errorf("no namespace: line %s", line)
			}
			continue
		}
		ps, err := emftest.Parse(line)
		if err != nil || len(ps) == 0 || ps[0].Namespace != namespace {
			t.Errorf("namespace: %+v %v", ps, err)
		}
	}
}

// A panicking handler on a net/http server (the runner): before anything is written the
// client gets a 500 problem+json; after the status was written the connection is aborted, so
// no client takes a truncated answer for a whole one. Either way the panic is logged and the
// access line says 500 and counts a 5xx.
func TestPanicIs500(t *testing.T) {
	for _, tt := range []struct {
		name  string
		begin func(http.ResponseWriter) // what the handler writes before it panics
	}{
		{"before WriteHeader", func(http.ResponseWriter) {}},
		{"after WriteHeader", func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK); _, _ = w.Write([]byte(`{"partial":`)) }},
		{"after a flush", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"partial":`))
			_ = http.NewResponseController(w).Flush()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.Buffer{}
			rt, _ := newRouter(nil, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), MetricsNamespace: testNamespace})
			rt.Handle(http.MethodGet, "/boom", "Boom", func(w http.ResponseWriter, _ *http.Request) {
				tt.begin(w)
				panic("serving bug")
			})
			srv := httptest.NewUnstartedServer(rt)
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.Start()
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL + "/boom")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tt.name == "before WriteHeader" {
				if err != nil || resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), `"cause":"`+CauseInternal+`"`) {
					t.Fatalf("answer %v %s (%v), want a 500 problem", resp, body, err)
				}
			} else if err == nil {
				t.Fatalf("the client read a whole answer %d %s", resp.StatusCode, body)
			}
			out := logs.String()
			if !strings.Contains(out, `"msg":"panic"`) || !strings.Contains(out, `serving bug`) {
				t.Errorf("the panic was not logged: %s", out)
			}
			var line struct {
				Level     string  `json:"level"`
				Status    int     `json:"status"`
				Operation string  `json:"operation"`
				Errors5xx float64 `json:"5xx"`
			}
			if err := json.Unmarshal(lastLine(t, logs), &line); err != nil {
				t.Fatal(err)
			}
			if line.Level != "ERROR" || line.Status != http.StatusInternalServerError || line.Operation != "Boom" || line.Errors5xx != 1 {
				t.Errorf("access line %+v, want ERROR, 500, Boom, 5xx 1", line)
			}
			if n := strings.Count(out, `"msg":"request"`); n != 1 {
				t.Errorf("%d access lines, want 1", n)
			}
		})
	}
}
