package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/security"
)

// reqInfo is what routing and the handler learn that the access log reports.
type reqInfo struct {
	operation   string // the route's operation; "" for a request no route took
	caller      string
	internal    error  // a server fault: logged at ERROR
	clientFault error  // a broken or slow request: logged at WARN, not a server error
	oauthError  string // the AccessTokenErr error code answered, if any
}

type infoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// accessLog is where every request ends: one JSON line per request (request id, operation,
// caller id, status and duration, and the request's CloudWatch metrics in Embedded Metric Format
// under namespace, when one is set), whatever the handler did, a panic included. It never logs
// bodies, headers, tokens or certificates.
type accessLog struct {
	logger    *slog.Logger
	requestID func(*http.Request) string
	namespace string
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

// Unwrap lets http.ResponseController reach the writer's other methods (Flush, deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Resetter is a ResponseWriter that holds the whole answer until the request has ended (the
// Lambda function's), so an answer already begun can still be replaced: Reset drops it. A panic
// after the status was written is then answered 500; on any other writer (the runner's
// connection) the answer is aborted instead (http.ErrAbortHandler), never left a truncated 2xx.
type Resetter interface {
	http.ResponseWriter
	Reset()
}

// serve answers r with h behind the access log.
func (l *accessLog) serve(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	start := time.Now()
	info := &reqInfo{}
	ctx, counts := metrics.WithCounts(r.Context()) // adapters count throttled attempts into it
	r = r.WithContext(context.WithValue(ctx, infoKey{}, info))
	rec := &statusRecorder{ResponseWriter: w}
	id := l.requestID(r)
	w.Header().Set("X-Request-Id", id)
	defer func() {
		abort := false
		if p := recover(); p != nil {
			abort = l.recovered(rec, r, id, p)
		}
		if rec.status == 0 { // nothing written: net/http would answer 200
			rec.WriteHeader(http.StatusOK)
		}
		l.write(r, id, start, rec.status, info, counts)
		if abort {
			panic(http.ErrAbortHandler) // after the line: net/http drops the connection quietly
		}
	}()
	h(rec, r)
}

// recovered answers the panic p of a handler with a logged 500. It reports whether the answer
// must be aborted instead: it was begun on a writer that cannot take it back.
func (l *accessLog) recovered(rec *statusRecorder, r *http.Request, id string, p any) (abort bool) {
	l.logger.ErrorContext(r.Context(), "panic", slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
	err := fmt.Errorf("panic: %v", p)
	if rec.status != 0 {
		rw, ok := rec.ResponseWriter.(Resetter)
		if !ok {
			rec.status = http.StatusInternalServerError
			infoOf(r).internal = err
			return true
		}
		rw.Reset()
		rec.status = 0
		rw.Header().Set("X-Request-Id", id)
	}
	writeError(rec, r, err)
	return false
}

// write writes the access line of a request that began at start.
func (l *accessLog) write(r *http.Request, id string, start time.Time, status int, info *reqInfo, counts *metrics.Counts) {
	end := time.Now()
	took := end.Sub(start)
	attrs := []slog.Attr{
		slog.String("requestId", id),
		slog.String("operation", info.operation),
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("caller", info.caller),
		slog.Int("status", status),
		slog.Float64("durationMs", float64(took.Microseconds())/1000),
	}
	level := slog.LevelInfo
	switch {
	case info.internal != nil:
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", info.internal.Error()))
	case info.clientFault != nil:
		level = slog.LevelWarn
		attrs = append(attrs, slog.String("clientError", info.clientFault.Error()))
	}
	if l.namespace != "" {
		attrs = append(attrs, l.metrics(end, r.Method, status, info, counts, took)...)
	}
	l.logger.LogAttrs(r.Context(), level, "request", attrs...)
}

// metrics are the EMF members of a request's line: Requests, 4xx, 5xx and Latency always; the
// operation's outcome (tokens issued, contexts created or updated, revocations) on its own
// operation's lines; adapter counts (throttles) when non-zero; all by operation (the line's own
// member; an unrouted request has none and counts in the totals only) and in total. A token
// denial is also counted by its OAuth error code. A broken or slow body is the client's fault:
// never a 5xx.
func (l *accessLog) metrics(at time.Time, method string, status int, info *reqInfo, counts *metrics.Counts, took time.Duration) []slog.Attr {
	serverFault := status >= 500 && info.clientFault == nil
	clientFault := status >= 400 && !serverFault
	ms := make([]metrics.Metric, 0, 8)
	ms = append(ms,
		metrics.Count(metrics.Requests, 1),
		metrics.Count(metrics.ClientErrors, b2i(clientFault)),
		metrics.Count(metrics.ServerErrors, b2i(serverFault)),
		metrics.Duration(metrics.Latency, took),
	)
	switch info.operation {
	case security.ObtainAuthorization.String():
		ms = append(ms, metrics.Count(metrics.TokensIssued, b2i(status == http.StatusOK)))
	case security.ObtainSecurityMethod.String():
		ms = append(ms, metrics.Count(metrics.ContextsCreated, b2i(status == http.StatusCreated)),
			metrics.Count(metrics.ContextsUpdated, b2i(method == http.MethodPost && status == http.StatusOK)))
	case security.RevokeAuthorization.String():
		ms = append(ms, metrics.Count(metrics.Revocations, b2i(status == http.StatusNoContent)))
	}
	ms = append(ms, counts.Metrics()...)
	byOp := byOperation // "operation" is already a member of the line
	if info.operation == "" {
		byOp = totalOnly // a dimension value may not be empty
	}
	if info.oauthError == "" {
		return metrics.Attrs(l.namespace, at, nil, metrics.Set{Dimensions: byOp, Metrics: ms})
	}
	return metrics.Attrs(l.namespace, at, []metrics.Dimension{{Name: metrics.DimOAuthError, Value: info.oauthError}},
		metrics.Set{Dimensions: byOp, Metrics: ms},
		metrics.Set{Dimensions: byOAuthError, Metrics: []metrics.Metric{metrics.Count(metrics.TokenDenials, 1)}})
}

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
