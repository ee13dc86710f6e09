package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/capifcore/capif-security/shared/metrics"
)

// reqInfo is what a handler learns that the access log reports.
type reqInfo struct {
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

// accessLog writes one JSON line per request: request id, operation, caller id, status and
// duration, and the request's CloudWatch metrics in Embedded Metric Format (shared/metrics) under
// namespace. It never logs bodies, headers, tokens or certificates.
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

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (l *accessLog) serve(w http.ResponseWriter, r *http.Request, operation string, h http.HandlerFunc) {
	start := time.Now()
	info := &reqInfo{}
	ctx, counts := metrics.WithCounts(r.Context()) // adapters count throttled attempts into it
	r = r.WithContext(context.WithValue(ctx, infoKey{}, info))
	rec := &statusRecorder{ResponseWriter: w}
	id := l.requestID(r)
	rec.Header().Set("X-Request-Id", id)
	h(rec, r)
	took := time.Since(start)
	attrs := []slog.Attr{
		slog.String("requestId", id),
		slog.String("operation", operation),
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("caller", info.caller),
		slog.Int("status", rec.status),
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
	attrs = append(attrs, l.metrics(r.Method, operation, rec.status, info, counts, took)...)
	l.logger.LogAttrs(r.Context(), level, "request", attrs...)
}

// metrics are the EMF members of a request's line: Requests, 4xx, 5xx and Latency always; the
// operation's outcome (tokens issued, contexts created or updated, revocations) on its own
// operation's lines; adapter counts (throttles) when non-zero; all by operation (the line's own
// member; an unrouted request has none and counts in the totals only) and in total. A token
// denial is also counted by its OAuth error code. A broken or slow body is the client's fault:
// never a 5xx.
func (l *accessLog) metrics(method, operation string, status int, info *reqInfo, counts *metrics.Counts, took time.Duration) []slog.Attr {
	serverFault := status >= 500 && info.clientFault == nil
	clientFault := status >= 400 && !serverFault
	ms := []metrics.Metric{
		metrics.Count(metrics.Requests, 1),
		metrics.Count(metrics.ClientErrors, b2i(clientFault)),
		metrics.Count(metrics.ServerErrors, b2i(serverFault)),
		metrics.Duration(metrics.Latency, took),
	}
	switch operation {
	case OpObtainAuthorization:
		ms = append(ms, metrics.Count(metrics.TokensIssued, b2i(status == http.StatusOK)))
	case OpObtainSecurityMethod:
		ms = append(ms, metrics.Count(metrics.ContextsCreated, b2i(status == http.StatusCreated)),
			metrics.Count(metrics.ContextsUpdated, b2i(method == http.MethodPost && status == http.StatusOK)))
	case OpRevokeAuthorization:
		ms = append(ms, metrics.Count(metrics.Revocations, b2i(status == http.StatusNoContent)))
	}
	ms = append(ms, counts.Metrics()...)
	byOp := [][]string{{metrics.DimOperation}, {}} // "operation" is already a member of the line
	if operation == "" {
		byOp = [][]string{{}} // a dimension value may not be empty
	}
	var dims []metrics.Dimension
	sets := []metrics.Set{{Dimensions: byOp, Metrics: ms}}
	if info.oauthError != "" {
		dims = append(dims, metrics.Dimension{Name: metrics.DimOAuthError, Value: info.oauthError})
		sets = append(sets, metrics.Set{Dimensions: [][]string{{metrics.DimOAuthError}, {}}, Metrics: []metrics.Metric{metrics.Count(metrics.TokenDenials, 1)}})
	}
	return metrics.Attrs(l.namespace, time.Now(), dims, sets...)
}

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
