package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"
)

// reqInfo is what a handler learns that the access log reports.
type reqInfo struct {
	caller      string
	internal    error // a server fault: logged at ERROR
	clientFault error // a broken or slow request: logged at WARN, not a server error
}

type infoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// accessLog writes one JSON line per request: request id, operation, caller id, status and
// duration. It never logs bodies, headers, tokens or certificates.
type accessLog struct {
	logger    *slog.Logger
	requestID func(*http.Request) string
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
	r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
	rec := &statusRecorder{ResponseWriter: w}
	id := l.requestID(r)
	rec.Header().Set("X-Request-Id", id)
	h(rec, r)
	attrs := []slog.Attr{
		slog.String("requestId", id),
		slog.String("operation", operation),
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("caller", info.caller),
		slog.Int("status", rec.status),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
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
	l.logger.LogAttrs(r.Context(), level, "request", attrs...)
}

// RandomRequestID is the default request id: 16 random hex characters.
func RandomRequestID(*http.Request) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
