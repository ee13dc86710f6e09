package lambdaapp

import (
	"context"
	"log/slog"
	"strings"
)

// traceKey is the context key under which aws-lambda-go puts the invocation's X-Ray trace
// header (its own untyped string key: it is what the runtime sets).
const traceKey = "x-amzn-trace-id"

// traceEnv is the same header in the environment, set by aws-lambda-go for each invocation: it
// serves the log lines written without the request's context (the SDK's, the proxy's).
const traceEnv = "_X_AMZN_TRACE_ID"

// WithTraceID wraps h so that every record carries traceId, the X-Ray trace id (the Root of the
// trace header) of the invocation being served: from the record's context, else from the
// runtime's environment (getenv). A record written outside any invocation (the init) has none.
// Searching the logs for a trace id finds every line of the request X-Ray shows.
func WithTraceID(h slog.Handler, getenv func(string) string) slog.Handler {
	return traceHandler{next: h, getenv: getenv}
}

type traceHandler struct {
	next   slog.Handler
	getenv func(string) string
}

func (t traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t traceHandler) Handle(ctx context.Context, r slog.Record) error {
	header, _ := ctx.Value(traceKey).(string)
	if header == "" && t.getenv != nil {
		header = t.getenv(traceEnv)
	}
	if id := traceRoot(header); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("traceId", id))
	}
	return t.next.Handle(ctx, r)
}

func (t traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{next: t.next.WithAttrs(as), getenv: t.getenv}
}

func (t traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{next: t.next.WithGroup(name), getenv: t.getenv}
}

// traceRoot is the Root of an X-Ray trace header ("Root=1-…;Parent=…;Sampled=1"); a bare id
// is taken as it is.
func traceRoot(header string) string {
	for part := range strings.SplitSeq(header, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "Root="); ok {
			return v
		}
	}
	if header != "" && !strings.ContainsAny(header, "=;") {
		return header
	}
	return ""
}
