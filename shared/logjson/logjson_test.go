package logjson

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/jsonenc"
)

var at = time.Date(2026, 12, 1, 12, 30, 45, 123456789, time.UTC)

// odd are strings that exercise every escaping rule.
var odd = []string{
	"", "plain", `quote " and \ backslash`, "nl\ncr\rtab\t", "ctl \x00\x01\x1f\x7f", "<html>&amp;",
	"bad utf8 \xff\xfe end", "sep \u2028 \u2029", "émoji 🎉", "\xed\xa0\x80 surrogate", "trailing \xc3",
}

func record(level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(at, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

// lines renders r through New and through slog.JSONHandler with the same options.
// The third result says whether New's handler wrote the line itself (not slog.JSONHandler).
func lines(t testing.TB, opts *slog.HandlerOptions, derive func(slog.Handler) slog.Handler, r slog.Record) (ours, slogs string, fast bool) {
	t.Helper()
	var a, b bytes.Buffer
	var h1, h2 slog.Handler = New(&a, opts), slog.NewJSONHandler(&b, opts)
	if derive != nil {
		h1, h2 = derive(h1), derive(h2)
	}
	if err := h1.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := h2.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	lh, isOurs := h1.(*Handler)
	_, fast = appendRecord(nil, r)
	return a.String(), b.String(), isOurs && lh.fast && fast
}

func accessMembers() Members {
	var emf []byte
	emf = append(emf, `{"Timestamp":1764592245123,"CloudWatchMetrics":[{"Namespace":`...)
	emf = jsonenc.AppendString(emf, "CAPIF/Security")
	emf = append(emf, `,"Dimensions":[["operation"],[]],"Metrics":[{"Name":"Requests","Unit":"Count"}]}]}`...)
	return Members(nil).Float("durationMs", 0.045).Raw("_aws", emf).Int("Requests", 1).Float("Latency", 12.5)
}

func TestSameLinesAsSlog(t *testing.T) {
	type tc struct {
		name   string
		opts   *slog.HandlerOptions
		derive func(slog.Handler) slog.Handler
		r      slog.Record
		fast   bool // the fast path writes it (not slog.JSONHandler)
	}
	tests := []tc{
		{name: "access line", r: record(slog.LevelInfo, "request", slog.String("requestId", "0123"), slog.String("operation", "Obtain_Authorization"),
			slog.Int("status", 200), accessMembers().Attr(), slog.String("traceId", "1-abc")), fast: true},
		{name: "kinds", r: record(slog.LevelWarn, "m", slog.Int64("i", -7), slog.Uint64("u", math.MaxUint64), slog.Bool("b", true), slog.Bool("f", false)), fast: true},
		{name: "no time", r: slog.NewRecord(time.Time{}, slog.LevelError, "x", 0), fast: true},
		{name: "custom level", r: record(slog.LevelDebug+2, "x"), opts: &slog.HandlerOptions{Level: slog.LevelDebug}, fast: true},
		{name: "empty members", r: record(slog.LevelInfo, "x", Members(nil).Attr(), slog.String("a", "b")), fast: true},
		{name: "float attr", r: record(slog.LevelInfo, "x", slog.Float64("f", 1.5))},
		{name: "duration attr", r: record(slog.LevelInfo, "x", slog.Duration("d", time.Second))},
		{name: "group attr", r: record(slog.LevelInfo, "x", slog.Group("g", slog.String("a", "b")))},
		{name: "error any", r: record(slog.LevelInfo, "x", slog.Any("err", context.Canceled))},
		{name: "members under a key", r: record(slog.LevelInfo, "x", slog.Any("k", accessMembers()))},
		{name: "empty key string", r: record(slog.LevelInfo, "x", slog.String("", ""))},
		{name: "derived", derive: func(h slog.Handler) slog.Handler {
			return h.WithAttrs([]slog.Attr{slog.String("svc", "capif")}).WithGroup("g")
		},
			r: record(slog.LevelInfo, "x", accessMembers().Attr())},
		{name: "replace attr", opts: &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "Requests" {
				a.Value = slog.StringValue("replaced")
			}
			return a
		}}, r: record(slog.LevelInfo, "x", accessMembers().Attr())},
	}
	for i, s := range odd {
		tests = append(tests, tc{name: "string " + string(rune('a'+i)), fast: true,
			r: record(slog.LevelInfo, s, slog.String(s+"k", s), Members(nil).String(s+"m", s).Raw("arr", append(jsonenc.AppendString([]byte("["), s), ']')).Attr())})
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-7, 1e-6, 123456789, 1e20, 1e21, 1.5e300, -2.5e-300, math.SmallestNonzeroFloat64, math.MaxFloat64, math.NaN(), math.Inf(1)} {
		tests = append(tests, tc{name: "float " + string(jsonenc.AppendFloat(nil, f)), fast: true, r: record(slog.LevelInfo, "x", Members(nil).Float("f", f).Attr())})
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			ours, theirs, fast := lines(t, c.opts, c.derive, c.r)
			if ours != theirs {
				t.Errorf("lines differ\n ours: %s\nslog's: %s", ours, theirs)
			}
			if !json.Valid([]byte(ours)) {
				t.Errorf("not JSON: %s", ours)
			}
			if fast != c.fast {
				t.Errorf("fast path taken: %v, want %v", fast, c.fast)
			}
		})
	}
}

func TestMembersAreLineMembers(t *testing.T) {
	ours, _, _ := lines(t, nil, nil, record(slog.LevelInfo, "request", accessMembers().Attr()))
	var line map[string]any
	if err := json.Unmarshal([]byte(ours), &line); err != nil {
		t.Fatal(err)
	}
	if line["durationMs"] != 0.045 || line["Requests"] != 1.0 || line["_aws"] == nil {
		t.Errorf("members not at the top of the line: %s", ours)
	}
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	var buf bytes.Buffer
	h := New(&buf, nil)
	derived := h.WithAttrs([]slog.Attr{slog.String("d", "1")})
	done := make(chan bool)
	for g := range 4 {
		go func() {
			for range 200 {
				hh := slog.Handler(h)
				if g%2 == 1 {
					hh = derived
				}
				_ = hh.Handle(context.Background(), record(slog.LevelInfo, "x", slog.Float64("f", 1.5), accessMembers().Attr()))
				_ = hh.Handle(context.Background(), record(slog.LevelInfo, "x", accessMembers().Attr()))
			}
			done <- true
		}()
	}
	for range 4 {
		<-done
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4*200*2 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("torn line: %q", l)
		}
	}
}

func FuzzSameLinesAsSlog(f *testing.F) {
	for _, s := range odd {
		f.Add(s, s, int64(len(s)), float64(len(s))/3)
	}
	f.Fuzz(func(t *testing.T, key, s string, n int64, x float64) {
		arr := append(jsonenc.AppendFloat(append(jsonenc.AppendString([]byte("["), s), ','), x), ']')
		m := Members(nil).String(key, s).Int(key+"n", n).Float(key+"x", x).Raw(key+"a", arr)
		r := record(slog.LevelInfo, s, slog.String(key, s), slog.Int64("n", n), m.Attr())
		ours, theirs, _ := lines(t, nil, nil, r)
		if ours != theirs {
			t.Errorf("lines differ\n ours: %q\nslog's: %q", ours, theirs)
		}
		if !json.Valid([]byte(ours)) {
			t.Errorf("not JSON: %q", ours)
		}
	})
}

func BenchmarkAccessLine(b *testing.B) {
	m := accessMembers()
	attrs := []slog.Attr{slog.String("requestId", "0123456789abcdef"), slog.String("operation", "Obtain_Authorization"), slog.String("method", "POST"),
		slog.String("path", "/capif-security/v1/securities/inv2/token"), slog.String("caller", "inv2"), slog.Int("status", 200), m.Attr()}
	for _, c := range []struct {
		name string
		h    slog.Handler
	}{{"logjson", New(discard{}, nil)}, {"slog.JSONHandler-via-LogValue", slog.NewJSONHandler(discard{}, nil)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
				r.AddAttrs(attrs...)
				_ = c.h.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
