package logjson

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/jsonenc"
)

// Handler writes JSON lines; see the package documentation.
type Handler struct {
	mu   *sync.Mutex
	w    io.Writer
	next slog.Handler // slog.JSONHandler on the same writer and lock: every record the fast path leaves
	fast bool         // the options leave the line to the record alone (no ReplaceAttr, no AddSource)
}

// New is a handler writing to w with opts (nil for the defaults), as slog.NewJSONHandler does.
func New(w io.Writer, opts *slog.HandlerOptions) *Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	mu := &sync.Mutex{}
	return &Handler{
		mu:   mu,
		w:    w,
		next: slog.NewJSONHandler(lockedWriter{mu, w}, opts),
		fast: opts.ReplaceAttr == nil && !opts.AddSource,
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Enabled is slog.JSONHandler's: the options' level, Info by default.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs is slog.JSONHandler's: a derived logger's lines are slog's own (Members in them
// still render through LogValue).
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler { return h.next.WithAttrs(as) }

// WithGroup is slog.JSONHandler's, as WithAttrs is.
func (h *Handler) WithGroup(name string) slog.Handler { return h.next.WithGroup(name) }

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle writes r's line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.next.Handle(ctx, r)
	}
	bp := buffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 { // a rare huge line does not stay pinned in the pool
			buffers.Put(bp)
		}
	}()
	line, ok := appendRecord((*bp)[:0], r)
	*bp = line
	if !ok {
		return h.next.Handle(ctx, r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(line)
	return err
}

// appendRecord appends r's line as slog.JSONHandler writes it, or reports false for a record
// the fast path leaves to it.
func appendRecord(buf []byte, r slog.Record) ([]byte, bool) {
	buf = append(buf, '{')
	if !r.Time.IsZero() {
		t := r.Time.Round(0)
		if y := t.Year(); y < 0 || y >= 10000 {
			return buf, false
		}
		buf = append(buf, `"time":"`...)
		buf = t.AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `",`...)
	}
	buf = append(buf, `"level":`...)
	buf = jsonenc.AppendStringReplacing(buf, r.Level.String(), `\ufffd`)
	buf = append(buf, `,"msg":`...)
	buf = jsonenc.AppendStringReplacing(buf, r.Message, `\ufffd`)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		buf, ok = appendAttr(buf, a)
		return ok
	})
	return append(buf, '}', '\n'), ok
}

func appendAttr(buf []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		if a.Value.Kind() != slog.KindLogValuer {
			return buf, false
		}
		m, ok := a.Value.Any().(Members)
		if !ok {
			return buf, false
		}
		if len(m) > 0 {
			buf = append(append(buf, ','), m...)
		}
		return buf, true
	}
	switch a.Value.Kind() {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool:
	default:
		return buf, false
	}
	buf = append(buf, ',')
	buf = jsonenc.AppendStringReplacing(buf, a.Key, `\ufffd`)
	buf = append(buf, ':')
	switch v := a.Value; v.Kind() {
	case slog.KindString:
		buf = jsonenc.AppendStringReplacing(buf, v.String(), `\ufffd`)
	case slog.KindInt64:
		buf = strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		buf = strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindBool:
		buf = strconv.AppendBool(buf, v.Bool())
	}
	return buf, true
}
