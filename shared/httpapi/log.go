package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/logjson"
	"github.com/capifcore/capif-security/shared/metrics"
)

// reqInfo is what a handler learns that the access log reports.
type reqInfo struct {
	caller      string
	internal    error  // a server fault: logged at ERROR
	clientFault error  // a broken or slow request: logged at WARN, not a server error
	oauthError  string // the AccessTokenErr error code answered, if any
	params      params // the route's path segments (pathValue)
}

type infoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// accessLog writes one JSON line per request: request id, operation, caller id, status and
// duration, and the request's CloudWatch metrics in Embedded Metric Format (shared/metrics) under
// namespace. It never logs bodies, headers, tokens or certificates.
type accessLog struct {
	logger     *slog.Logger
	requestID  func(*http.Request) string
	namespace  string
	directives sync.Map // directiveKey → metrics.Directive
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// exchange is one request's state, allocated once: its status, what the handler learnt, and
// the adapters' tally. It is also the request's context (the parent's, plus the info and the
// tally as values), which saves a context.WithValue per value.
type exchange struct {
	context.Context
	rec       statusRecorder
	info      reqInfo
	counts    metrics.Counts
	requestID [1]string // the X-Request-Id header's value
}

func (x *exchange) Value(key any) any {
	if _, ok := key.(infoKey); ok {
		return &x.info
	}
	if v, ok := x.counts.ContextValue(key); ok {
		return v
	}
	return x.Context.Value(key)
}

func (l *accessLog) serve(w http.ResponseWriter, r *http.Request, operation string, ps params, h http.HandlerFunc) {
	start := time.Now()
	// Adapters count throttled attempts into the exchange's tally through the context.
	x := &exchange{Context: r.Context(), rec: statusRecorder{ResponseWriter: w}, info: reqInfo{params: ps}}
	r = r.WithContext(x)
	id := l.requestID(r)
	x.requestID[0] = id
	w.Header()["X-Request-Id"] = x.requestID[:] // canonical already: no need for Header.Set's work
	h(&x.rec, r)
	end := time.Now()
	took := end.Sub(start)
	status, info := x.rec.status, &x.info
	level, faultKey, fault := slog.LevelInfo, "", error(nil)
	switch {
	case info.internal != nil:
		level, faultKey, fault = slog.LevelError, "error", info.internal
	case info.clientFault != nil:
		level, faultKey, fault = slog.LevelWarn, "clientError", info.clientFault
	}
	handler := l.logger.Handler()
	if !handler.Enabled(r.Context(), level) {
		return
	}
	m := make(logjson.Members, 0, 768) // a token line is about 600 bytes
	m = m.String("requestId", id).String("operation", operation).String("method", r.Method).
		String("path", r.URL.EscapedPath()).String("caller", info.caller).Int("status", int64(status)).
		Float("durationMs", float64(took.Microseconds())/1000)
	if fault != nil {
		m = m.String(faultKey, fault.Error())
	}
	m = l.metrics(m, end, r.Method, operation, status, info, &x.counts, took)
	// The record is made here rather than by Logger.LogAttrs, which spends a runtime.Callers on
	// a source location that no handler of the service writes.
	rec := slog.NewRecord(end, level, "request", 0)
	rec.AddAttrs(m.Attr())
	_ = handler.Handle(r.Context(), rec)
}

// metrics appends the EMF members of a request's line: Requests, 4xx, 5xx and Latency always;
// the operation's outcome (tokens issued, contexts created or updated, revocations) on its own
// operation's lines; adapter counts (throttles) when non-zero; all by operation (the line's own
// member; an unrouted request has none and counts in the totals only) and in total. A token
// denial is also counted by its OAuth error code. A broken or slow body is the client's fault:
// never a 5xx.
func (l *accessLog) metrics(m logjson.Members, at time.Time, method, operation string, status int, info *reqInfo, counts *metrics.Counts, took time.Duration) logjson.Members {
	serverFault := status >= 500 && info.clientFault == nil
	clientFault := status >= 400 && !serverFault
	var msBuf [8]metrics.Metric
	ms := append(msBuf[:0],
		metrics.Count(metrics.Requests, 1),
		metrics.Count(metrics.ClientErrors, b2i(clientFault)),
		metrics.Count(metrics.ServerErrors, b2i(serverFault)),
		metrics.Duration(metrics.Latency, took),
	)
	switch operation {
	case OpObtainAuthorization:
		ms = append(ms, metrics.Count(metrics.TokensIssued, b2i(status == http.StatusOK)))
	case OpObtainSecurityMethod:
		ms = append(ms, metrics.Count(metrics.ContextsCreated, b2i(status == http.StatusCreated)),
			metrics.Count(metrics.ContextsUpdated, b2i(method == http.MethodPost && status == http.StatusOK)))
	case OpRevokeAuthorization:
		ms = append(ms, metrics.Count(metrics.Revocations, b2i(status == http.StatusNoContent)))
	}
	extra := counts.Metrics()
	ms = append(ms, extra...)
	byOp := byOperation // "operation" is already a member of the line
	if operation == "" {
		byOp = totalOnly // a dimension value may not be empty
	}
	sets := [2]metrics.Set{{Dimensions: byOp, Metrics: ms}}
	var dims []metrics.Dimension
	n := 1
	if info.oauthError != "" {
		dims = []metrics.Dimension{{Name: metrics.DimOAuthError, Value: info.oauthError}}
		sets[1] = metrics.Set{Dimensions: byOAuthError, Metrics: []metrics.Metric{metrics.Count(metrics.TokenDenials, 1)}}
		n = 2
	}
	// Without adapter counts, the metrics of a line follow from its operation and OAuth error:
	// the directive is encoded once per pair (a handful: both come from code, not requests).
	if len(extra) > 0 {
		return metrics.Append(m, l.namespace, at, dims, sets[:n]...)
	}
	key := directiveKey{operation, info.oauthError}
	d, ok := l.directives.Load(key)
	if !ok {
		d, _ = l.directives.LoadOrStore(key, metrics.NewDirective(l.namespace, sets[:n]...))
	}
	return d.(metrics.Directive).Append(m, at, dims, sets[:n]...)
}

type directiveKey struct{ operation, oauthError string }

// The dimension sets of the access log's metrics (read only).
var (
	byOperation  = [][]string{{metrics.DimOperation}, {}}
	totalOnly    = [][]string{{}}
	byOAuthError = [][]string{{metrics.DimOAuthError}, {}}
)

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RandomRequestID is the default request id: 16 random hex characters.
func RandomRequestID(*http.Request) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
