// Package metrics publishes CloudWatch metrics as Embedded Metric Format (EMF) members of the
// JSON log lines the service already writes: CloudWatch Logs extracts them, so a metric costs
// no API call, no extra latency and no IAM permission.
//
// Contract:
//   - Names lists every metric the service emits; alarms and the dashboard in template.yaml name
//     only these (a test checks it).
//   - Dimensions are few and bounded: operation (the access log's own member: the TS 29.222
//     operation; unrouted requests count in the totals only) and, for token denials, oauthError
//     (an RFC 6749 error code). Never an invoker or AEF id. No member differs from another of the
//     line only in case (JSON decoders such as Go's match names case-insensitively).
//   - Append adds the members of one line: "_aws" (the metric directive) plus one root member
//     per metric value and per dimension value given, as the EMF specification requires; a
//     dimension may also name a member the caller writes itself. They are logjson.Members: any
//     slog handler renders them, shared/logjson's without reflection.
//   - Counts is a per-request tally that adapters add to through the request's context (Add)
//     without any domain signature knowing of it; the access log publishes it.
package metrics

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/jsonenc"
	"github.com/capifcore/capif-security/shared/logjson"
)

// DefaultNamespace is the CloudWatch namespace unless CAPIF_METRICS_NAMESPACE says otherwise.
const DefaultNamespace = "CAPIF/Security"

// The metrics of the access log (one line per request).
const (
	Requests        = "Requests"        // every request, by operation
	ClientErrors    = "4xx"             // 0 or 1 per request: its Average is the 4xx rate
	ServerErrors    = "5xx"             // 0 or 1 per request: its Average is the 5xx rate
	Latency         = "Latency"         // milliseconds from first byte to answer
	TokensIssued    = "TokensIssued"    // access tokens issued (Obtain_Authorization 200)
	TokenDenials    = "TokenDenials"    // token requests answered with an AccessTokenErr, by OAuthError
	ContextsCreated = "ContextsCreated" // security contexts created (Obtain_Security_Method 201)
	ContextsUpdated = "ContextsUpdated" // security contexts updated (…/update 200)
	Revocations     = "Revocations"     // Revoke_Authorization requests that revoked (204)
	// Throttled AWS attempts of the request, counted per attempt (retried ones too): a rising
	// count warns before callers see 503s.
	KMSThrottles      = "KMSThrottles"
	DynamoDBThrottles = "DynamoDBThrottles"
)

// The metrics of the notification delivery worker (one line per event).
const (
	NotificationsDelivered    = "NotificationsDelivered"    // a notification the AEF accepted
	NotificationsRetried      = "NotificationsRetried"      // a failed attempt that will be tried again
	NotificationsDeadLettered = "NotificationsDeadLettered" // given up on: needs an operator (capif-admin outbox)
)

// Names is every metric name the service emits.
var Names = []string{
	Requests, ClientErrors, ServerErrors, Latency, TokensIssued, TokenDenials, ContextsCreated,
	ContextsUpdated, Revocations, KMSThrottles, DynamoDBThrottles,
	NotificationsDelivered, NotificationsRetried, NotificationsDeadLettered,
}

// Dimension names: members of the access log line.
const (
	DimOperation  = "operation"
	DimOAuthError = "oauthError"
)

// Units (CloudWatch StandardUnit values).
const (
	UnitCount        = "Count"
	UnitMilliseconds = "Milliseconds"
)

// Limits of one EMF directive (the EMF specification).
const (
	MaxDimensions = 30  // per dimension set
	MaxMetrics    = 100 // per directive
)

// Metric is one value.
type Metric struct {
	Name  string
	Unit  string
	Value float64
}

// Count is a Count metric.
func Count(name string, n int) Metric { return Metric{Name: name, Unit: UnitCount, Value: float64(n)} }

// Duration is a Milliseconds metric.
func Duration(name string, d time.Duration) Metric {
	return Metric{Name: name, Unit: UnitMilliseconds, Value: float64(d.Microseconds()) / 1000}
}

// Dimension is one dimension's name and value (a non-empty string).
type Dimension struct{ Name, Value string }

// Set is metrics published under the same dimension sets: each inner slice names dimensions
// of the line; an empty one publishes the metrics without dimensions (the service-wide total).
type Set struct {
	Dimensions [][]string
	Metrics    []Metric
}

// Append adds to m the EMF members of one log line at time at: "_aws" with one directive per
// set, the values of dims (dimensions the caller does not write itself) and the metrics' values.
// Sets without metrics are left out, and so is everything when no set has one. A metric named
// twice keeps its first value. It is written without reflection: it is on every request's line.
func Append(m logjson.Members, namespace string, at time.Time, dims []Dimension, sets ...Set) logjson.Members {
	return NewDirective(namespace, sets...).Append(m, at, dims, sets...)
}

// Directive is the "_aws" member of the lines that publish the same metrics (names and units, in
// the same order) under the same dimension sets, encoded once: from line to line only its
// Timestamp differs, so a caller that writes many such lines keeps one.
type Directive struct {
	metrics []byte // `,"CloudWatchMetrics":[…]}`: what follows the Timestamp; nil for no metrics
}

// NewDirective encodes the directive of sets; only their names, units and dimensions count.
func NewDirective(namespace string, sets ...Set) Directive {
	some := false
	for _, s := range sets {
		some = some || len(s.Metrics) > 0
	}
	if !some {
		return Directive{}
	}
	aws := []byte(`,"CloudWatchMetrics":[`)
	first := true
	for _, s := range sets {
		if len(s.Metrics) == 0 {
			continue
		}
		if !first {
			aws = append(aws, ',')
		}
		first = false
		aws = append(aws, `{"Namespace":`...)
		aws = jsonenc.AppendString(aws, namespace)
		aws = append(aws, `,"Dimensions":[`...)
		if len(s.Dimensions) == 0 {
			aws = append(aws, `[]`...)
		}
		for i, set := range s.Dimensions {
			if i > 0 {
				aws = append(aws, ',')
			}
			aws = append(aws, '[')
			for j, name := range set {
				if j > 0 {
					aws = append(aws, ',')
				}
				aws = jsonenc.AppendString(aws, name)
			}
			aws = append(aws, ']')
		}
		aws = append(aws, `],"Metrics":[`...)
		for i, mt := range s.Metrics {
			if i > 0 {
				aws = append(aws, ',')
			}
			aws = append(aws, `{"Name":`...)
			aws = jsonenc.AppendString(aws, mt.Name)
			aws = append(aws, `,"Unit":`...)
			aws = jsonenc.AppendString(aws, mt.Unit)
			aws = append(aws, '}')
		}
		aws = append(aws, `]}`...)
	}
	return Directive{metrics: append(aws, `]}`...)}
}

// Append adds to m the members of one line at time at: "_aws", the values of dims, and the
// values of sets, which are the sets d was made from (their values may differ).
func (d Directive) Append(m logjson.Members, at time.Time, dims []Dimension, sets ...Set) logjson.Members {
	if d.metrics == nil {
		return m
	}
	m = append(m.Key("_aws"), `{"Timestamp":`...)
	m = strconv.AppendInt(m, at.UnixMilli(), 10)
	m = append(m, d.metrics...)
	for _, dim := range dims {
		m = m.String(dim.Name, dim.Value)
	}
	for i, s := range sets {
		for j, mt := range s.Metrics {
			if !namedBefore(sets, i, j) {
				m = m.Float(mt.Name, mt.Value)
			}
		}
	}
	return m
}

// namedBefore reports whether the metric sets[i].Metrics[j] is named earlier in sets (a line
// has a handful: a scan beats a map).
func namedBefore(sets []Set, i, j int) bool {
	name := sets[i].Metrics[j].Name
	for a := 0; a <= i; a++ {
		ms := sets[a].Metrics
		if a == i {
			ms = ms[:j]
		}
		for _, mt := range ms {
			if mt.Name == name {
				return true
			}
		}
	}
	return false
}

// Emitter writes standalone metric lines (the delivery worker: one line per event).
type Emitter struct {
	Logger    *slog.Logger // default slog.Default()
	Namespace string       // default DefaultNamespace
	Now       func() time.Time
}

// Emit writes one log line at level with msg and attrs, publishing ms without dimensions:
//
//	e.Emit(ctx, slog.LevelWarn, "notification", []slog.Attr{slog.String("outboxId", id)},
//		metrics.Count(metrics.NotificationsDeadLettered, 1))
func (e Emitter) Emit(ctx context.Context, level slog.Level, msg string, attrs []slog.Attr, ms ...Metric) {
	l, ns, now := e.Logger, e.Namespace, e.Now
	if l == nil {
		l = slog.Default()
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	if now == nil {
		now = time.Now
	}
	l.LogAttrs(ctx, level, msg, append(attrs, Append(nil, ns, now(), nil, Set{Metrics: ms}).Attr())...)
}

// Counts is one request's tally of adapter events (throttled attempts), safe for concurrent use.
type Counts struct {
	mu sync.Mutex
	n  map[string]int
}

type countsKey struct{}

// WithCounts returns ctx carrying a fresh tally.
func WithCounts(ctx context.Context) (context.Context, *Counts) {
	c := &Counts{}
	return context.WithValue(ctx, countsKey{}, c), c
}

// ContextValue is c as the value of a context that carries it, for a context type of the
// caller's that holds c itself: its Value(key) answers c when ok. Add then finds c as it finds
// a tally of NewContext.
func (c *Counts) ContextValue(key any) (v any, ok bool) {
	if _, ok := key.(countsKey); ok {
		return c, true
	}
	return nil, false
}

// Add counts n events of metric name in ctx's tally; without one (a call outside a request)
// it does nothing.
func Add(ctx context.Context, name string, n int) {
	c, ok := ctx.Value(countsKey{}).(*Counts)
	if !ok || c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[name] += n
}

// Metrics are the tally's non-zero counts as Count metrics, by name.
func (c *Counts) Metrics() []Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.n) == 0 {
		return nil // most requests: nothing throttled, nothing allocated
	}
	var out []Metric
	for _, name := range slices.Sorted(maps.Keys(c.n)) {
		if c.n[name] != 0 {
			out = append(out, Count(name, c.n[name]))
		}
	}
	return out
}
