package lambdaapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/metrics/emftest"
	"github.com/capifcore/capif-security/shared/settings"
)

const traceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

// Every line the function writes while serving an invocation carries its X-Ray trace id, the
// access line its EMF metrics in the configured namespace.
func TestEveryLineCarriesTheTraceID(t *testing.T) {
	fx, _ := s3Fixture(t)
	fx.cfg.Settings.MetricsNamespace = "Test/Lambda"
	var logs bytes.Buffer
	// The runtime sets both: the context (request lines) and the variable (lines written
	// without the request's context, such as the SDK's).
	env := map[string]string{"_X_AMZN_TRACE_ID": traceHeader}
	logger := slog.New(lambdaapp.WithTraceID(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}), mapEnv(env)))
	f := fx.function(t, httpapi.All, lambdaapp.Options{Logger: logger})
	ev, err := jwksRequest().Event()
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(ev)
	//lint:ignore SA1029 aws-lambda-go's invoke loop puts the trace header under this plain string key
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), "x-amzn-trace-id", traceHeader), 10*time.Second)
	defer cancel()
	resp, err := f.Handle(ctx, payload)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 2 { // the truststore read and the access line
		t.Fatalf("log %s", logs.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["traceId"] != "1-5759e988-bd862e3fe1be46a994272793" {
			t.Errorf("line without the trace id: %s", l)
		}
		if m["msg"] == "request" {
			ps, err := emftest.Parse([]byte(l))
			if err != nil || len(ps) == 0 || ps[0].Namespace != "Test/Lambda" {
				t.Errorf("access line metrics %+v %v", ps, err)
			}
		}
	}

	// Each source alone.
	logs.Reset()
	logger.Info("no context")
	delete(env, "_X_AMZN_TRACE_ID")
	logger.InfoContext(ctx, "context only")
	if n := strings.Count(logs.String(), `"traceId":"1-5759e988-bd862e3fe1be46a994272793"`); n != 2 {
		t.Errorf("%d of 2 lines with the trace id: %s", n, logs.String())
	}
	// Outside any invocation: no trace id, and nothing else changes.
	logs.Reset()
	logger.With("k", "v").WithGroup("g").Info("init", "a", 1)
	if got := strings.TrimSpace(logs.String()); strings.Contains(got, "traceId") || !strings.Contains(got, `"k":"v","g":{"a":1}`) {
		t.Errorf("init line %s", got)
	}
}

// The truststore read names the version API Gateway was deployed with.
func TestTruststoreVersionIsRead(t *testing.T) {
	fx, s3 := s3Fixture(t)
	fx.cfg.Truststore.Version = "v2.3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
	f := fx.function(t, httpapi.All, lambdaapp.Options{})
	wantStatus(t, invoke(t, f, jwksRequest()), http.StatusOK)
	if q := s3.queries(); len(q) != 1 || q[0].Get("versionId") != fx.cfg.Truststore.Version {
		t.Fatalf("S3 queries %v, want one GetObject of version %s", q, fx.cfg.Truststore.Version)
	}
	if !strings.Contains(fx.logs.String(), "?versionId=v2.3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY") {
		t.Errorf("the truststore line does not name the version: %s", fx.logs)
	}

	fx, s3 = s3Fixture(t) // no version: the latest
	wantStatus(t, invoke(t, fx.function(t, httpapi.All, lambdaapp.Options{}), jwksRequest()), http.StatusOK)
	if q := s3.queries(); len(q) != 1 || q[0].Has("versionId") {
		t.Errorf("S3 queries %v, want no versionId", q)
	}
}

func TestConfigFromEnvTruststoreVersionAndNamespace(t *testing.T) {
	env := deployedEnv()
	env["CAPIF_TRUSTSTORE_VERSION"] = "abc"
	env["CAPIF_METRICS_NAMESPACE"] = "Prod/CAPIF"
	c, err := lambdaapp.ConfigFromEnv(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Truststore != (lambdaapp.Location{Bucket: "trust-bucket", Key: "mtls/truststore.pem", Version: "abc"}) || c.Settings.MetricsNamespace != "Prod/CAPIF" {
		t.Errorf("%+v %q", c.Truststore, c.Settings.MetricsNamespace)
	}
	c, err = lambdaapp.ConfigFromEnv(mapEnv(deployedEnv()))
	if err != nil || c.Settings.MetricsNamespace != settings.DefaultMetricsNamespace {
		t.Errorf("default namespace %q %v", c.Settings.MetricsNamespace, err)
	}
}
