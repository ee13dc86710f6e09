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
//   - Attrs returns the members of one line: "_aws" (the metric directive, one value that slog's
//     JSON handler encodes with encoding/json) plus one root member per metric value and per
//     dimension value given, as the EMF specification requires; a dimension may also name a
//     member the caller writes itself.
//   - Counts is a per-request tally that adapters add to through the request's context (Add)
//     without any domain signature knowing of it; the access log publishes it.
package metrics

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

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
	// The outbox after each run (gauges): live records per receiver and the age of the oldest
	// (dead ones in neither), and the dead letters waiting for an operator.
	OutboxPendingInvoker       = "OutboxPendingInvoker"
	OutboxOldestInvokerSeconds = "OutboxOldestInvokerSeconds"
	OutboxPendingAEF           = "OutboxPendingAEF"
	OutboxOldestAEFSeconds     = "OutboxOldestAEFSeconds"
	OutboxDeadLetters          = "OutboxDeadLetters"
	// CcfCertificateDaysLeft is the validity left of the CCF's certificate towards AEFs, once a
	// push has read it.
	CcfCertificateDaysLeft = "CcfCertificateDaysLeft"
)

// AccessLogNames are the metrics of the access log, WorkerNames those of the delivery run
// lines (the worker's, the runner's), and Names every metric name the service emits.
var (
	AccessLogNames = []string{Requests, ClientErrors, ServerErrors, Latency, TokensIssued, TokenDenials, ContextsCreated,
		ContextsUpdated, Revocations, KMSThrottles, DynamoDBThrottles}
	WorkerNames = []string{NotificationsDelivered, NotificationsRetried, NotificationsDeadLettered,
		OutboxPendingInvoker, OutboxOldestInvokerSeconds, OutboxPendingAEF, OutboxOldestAEFSeconds, OutboxDeadLetters, CcfCertificateDaysLeft}
	Names = slices.Concat(AccessLogNames, WorkerNames)
)

// Dimension names: members of the access log line.
const (
	DimOperation  = "operation"
	DimOAuthError = "oauthError"
)

// Units (CloudWatch StandardUnit values).
const (
	UnitCount        = "Count"
	UnitMilliseconds = "Milliseconds"
	UnitSeconds      = "Seconds"
	UnitNone         = "None"
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

// emf is the "_aws" member of a line (the EMF metric directive).
type emf struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

type metricDef struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

// Attrs are the EMF members of one log line at time at: "_aws" (the directive, one per set), the
// values of dims (dimensions the caller does not write itself) and the metrics' values. Sets
// without metrics are left out, and so is everything when no set has one. A metric named twice
// keeps its first value.
func Attrs(namespace string, at time.Time, dims []Dimension, sets ...Set) []slog.Attr {
	aws := emf{Timestamp: at.UnixMilli(), CloudWatchMetrics: make([]directive, 0, len(sets))}
	n := 1 + len(dims)
	for _, s := range sets {
		n += len(s.Metrics)
	}
	out := make([]slog.Attr, 1, n)
	for _, d := range dims {
		out = append(out, slog.String(d.Name, d.Value))
	}
	values := len(out)
	for _, s := range sets {
		if len(s.Metrics) == 0 {
			continue
		}
		d := directive{Namespace: namespace, Dimensions: s.Dimensions, Metrics: make([]metricDef, len(s.Metrics))}
		if d.Dimensions == nil {
			d.Dimensions = [][]string{{}}
		}
		for i, m := range s.Metrics {
			d.Metrics[i] = metricDef{Name: m.Name, Unit: m.Unit}
			if !slices.ContainsFunc(out[values:], func(a slog.Attr) bool { return a.Key == m.Name }) {
				out = append(out, slog.Float64(m.Name, m.Value))
			}
		}
		aws.CloudWatchMetrics = append(aws.CloudWatchMetrics, d)
	}
	if len(aws.CloudWatchMetrics) == 0 {
		return nil
	}
	// One member, which slog's JSON handler encodes with encoding/json. (As a json.RawMessage it
	// would be encoded twice: marshalled here, then compacted and checked again by the handler.)
	out[0] = slog.Any("_aws", aws)
	return out
}

// Emitter writes standalone metric lines (the delivery worker: one line per event).
type Emitter struct {
	Logger    *slog.Logger // default slog.Default()
	Namespace string       // the CloudWatch namespace (settings' CAPIF_METRICS_NAMESPACE); "": no metrics
	Now       func() time.Time
}

// Emit writes one log line at level with msg and attrs, publishing ms without dimensions (with
// no Namespace: the line alone):
//
//	e.Emit(ctx, slog.LevelWarn, "notification", []slog.Attr{slog.String("outboxId", id)},
//		metrics.Count(metrics.NotificationsDeadLettered, 1))
func (e Emitter) Emit(ctx context.Context, level slog.Level, msg string, attrs []slog.Attr, ms ...Metric) {
	l, ns, now := e.Logger, e.Namespace, e.Now
	if l == nil {
		l = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	if ns != "" {
		attrs = append(attrs, Attrs(ns, now(), nil, Set{Metrics: ms})...)
	}
	l.LogAttrs(ctx, level, msg, attrs...)
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
		return nil
	}
	var out []Metric
	for _, name := range slices.Sorted(maps.Keys(c.n)) {
		if c.n[name] != 0 {
			out = append(out, Count(name, c.n[name]))
		}
	}
	return out
}
