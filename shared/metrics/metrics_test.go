package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
)

func TestAttrsAreValidEMF(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, nil))
	at := time.UnixMilli(1764585600123)
	l.LogAttrs(context.Background(), slog.LevelInfo, "request", metrics.Attrs("Test/NS", at,
		[]metrics.Dimension{{metrics.DimOperation, "Obtain_Authorization"}, {metrics.DimOAuthError, "invalid_client"}},
		metrics.Set{Dimensions: [][]string{{metrics.DimOperation}, {}}, Metrics: []metrics.Metric{
			metrics.Count(metrics.Requests, 1), metrics.Duration(metrics.Latency, 1500*time.Microsecond)}},
		metrics.Set{Dimensions: [][]string{{metrics.DimOAuthError}}, Metrics: []metrics.Metric{metrics.Count(metrics.TokenDenials, 1)}},
		metrics.Set{Dimensions: [][]string{{metrics.DimOperation}}}, // no metrics: left out
	)...)
	got, err := emftest.Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	want := []emftest.Published{
		{Namespace: "Test/NS", Name: metrics.Requests, Unit: "Count", Value: 1, Dimensions: map[string]string{metrics.DimOperation: "Obtain_Authorization"}},
		{Namespace: "Test/NS", Name: metrics.Requests, Unit: "Count", Value: 1, Dimensions: map[string]string{}},
		{Namespace: "Test/NS", Name: metrics.Latency, Unit: "Milliseconds", Value: 1.5, Dimensions: map[string]string{metrics.DimOperation: "Obtain_Authorization"}},
		{Namespace: "Test/NS", Name: metrics.Latency, Unit: "Milliseconds", Value: 1.5, Dimensions: map[string]string{}},
		{Namespace: "Test/NS", Name: metrics.TokenDenials, Unit: "Count", Value: 1, Dimensions: map[string]string{metrics.DimOAuthError: "invalid_client"}},
	}
	if len(got) != len(want) {
		t.Fatalf("published %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Namespace != want[i].Namespace || got[i].Name != want[i].Name || got[i].Unit != want[i].Unit ||
			got[i].Value != want[i].Value || !equalMaps(got[i].Dimensions, want[i].Dimensions) {
			t.Errorf("published[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	var line struct {
		Aws struct{ Timestamp int64 } `json:"_aws"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line.Aws.Timestamp != at.UnixMilli() {
		t.Errorf("Timestamp %d, want %d (%v)", line.Aws.Timestamp, at.UnixMilli(), err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAttrsWithoutMetricsAreNothing(t *testing.T) {
	if a := metrics.Attrs("NS", time.Now(), []metrics.Dimension{{"Operation", "x"}}, metrics.Set{}); a != nil {
		t.Errorf("Attrs of no metrics = %v", a)
	}
}

// The validator itself must refuse what CloudWatch refuses.
func TestParseRefuses(t *testing.T) {
	good := `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Operation"]],"Metrics":[{"Name":"Requests","Unit":"Count"}]}]},"Operation":"op","Requests":1}`
	if _, err := emftest.Parse([]byte(good)); err != nil {
		t.Fatalf("the good line: %v", err)
	}
	for name, line := range map[string]string{
		"no _aws":                  `{"Requests":1}`,
		"no timestamp":             strings.Replace(good, `"Timestamp":1,`, ``, 1),
		"string timestamp":         strings.Replace(good, `"Timestamp":1`, `"Timestamp":"1"`, 1),
		"no directives":            `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]}}`,
		"no namespace":             strings.Replace(good, `"Namespace":"N",`, ``, 1),
		"AWS/ namespace":           strings.Replace(good, `"Namespace":"N"`, `"Namespace":"AWS/Lambda"`, 1),
		"no dimensions key":        strings.Replace(good, `"Dimensions":[["Operation"]],`, ``, 1),
		"dimension value missing":  strings.Replace(good, `"Operation":"op",`, ``, 1),
		"dimension value a number": strings.Replace(good, `"Operation":"op"`, `"Operation":7`, 1),
		"metric value missing":     strings.Replace(good, `,"Requests":1`, ``, 1),
		"metric value a string":    strings.Replace(good, `"Requests":1}`, `"Requests":"1"}`, 1),
		"bad unit":                 strings.Replace(good, `"Unit":"Count"`, `"Unit":"Requests"`, 1),
		"31 dimensions":            strings.Replace(good, `[["Operation"]]`, `[[`+strings.Repeat(`"Operation",`, 30)+`"Operation"]]`, 1),
		"101 metrics": strings.Replace(good, `"Metrics":[{"Name":"Requests","Unit":"Count"}]`,
			`"Metrics":[`+strings.Repeat(`{"Name":"Requests","Unit":"Count"},`, 100)+`{"Name":"Requests","Unit":"Count"}]`, 1),
	} {
		if _, err := emftest.Parse([]byte(line)); err == nil {
			t.Errorf("%s: accepted %s", name, line)
		}
	}
}

// Without a namespace the line carries no metrics (the settings always give one).
func TestEmitterWithoutNamespace(t *testing.T) {
	var buf bytes.Buffer
	metrics.Emitter{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}.Emit(context.Background(), slog.LevelInfo, "run", nil, metrics.Count(metrics.NotificationsDelivered, 1))
	if strings.Contains(buf.String(), "_aws") || !strings.Contains(buf.String(), `"msg":"run"`) {
		t.Errorf("line %s", buf.String())
	}
}

func TestEmitter(t *testing.T) {
	var buf bytes.Buffer
	e := metrics.Emitter{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), Namespace: "Test/NS", Now: func() time.Time { return time.UnixMilli(42) }}
	for _, name := range []string{metrics.NotificationsDelivered, metrics.NotificationsRetried, metrics.NotificationsDeadLettered} {
		buf.Reset()
		e.Emit(context.Background(), slog.LevelInfo, "notification", []slog.Attr{slog.String("outboxId", "o1")}, metrics.Count(name, 1))
		got, err := emftest.Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, buf.String())
		}
		if len(got) != 1 || got[0].Name != name || got[0].Value != 1 || got[0].Namespace != "Test/NS" || len(got[0].Dimensions) != 0 {
			t.Errorf("%s: published %+v", name, got)
		}
		if strings.Count(buf.String(), "\n") != 1 || !strings.Contains(buf.String(), `"outboxId":"o1"`) {
			t.Errorf("%s: line %s", name, buf.String())
		}
	}
}

func TestCounts(t *testing.T) {
	metrics.Add(context.Background(), metrics.KMSThrottles, 1) // no tally: nothing happens
	ctx, c := metrics.WithCounts(context.Background())
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { metrics.Add(ctx, metrics.DynamoDBThrottles, 1) })
	}
	wg.Wait()
	metrics.Add(ctx, metrics.KMSThrottles, 2)
	metrics.Add(ctx, "Zero", 0)
	got := c.Metrics()
	want := []metrics.Metric{metrics.Count(metrics.DynamoDBThrottles, 10), metrics.Count(metrics.KMSThrottles, 2)}
	if !slices.Equal(got, want) {
		t.Errorf("Metrics() = %v, want %v", got, want)
	}
}

func TestNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range metrics.Names {
		if seen[n] || n == "" {
			t.Errorf("metric name %q empty or listed twice", n)
		}
		seen[n] = true
	}
}
