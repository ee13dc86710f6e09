package lambdaapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

const (
	apiRoot     = "https://capif.example.com"
	invokerPath = "/capif-security/v1/trustedInvokers/{apiInvokerId}"
	escapedID   = "invoker%3" // needs escaping in a path (registry ids cannot hold spaces)
)

// registry is the test's registry: two invokers (one with an id that needs escaping), one AEF
// publishing an API that allows PKI.
const registry = `{
  "apiInvokers": [
    {"apiInvokerId": "invoker-1", "notificationDestination": "https://invoker-1.example.com/n"},
    {"apiInvokerId": "invoker%3", "notificationDestination": "https://invoker-3.example.com/n"}
  ],
  "aefs": [{"aefId": "aef-1"}],
  "serviceApis": [{
    "apiName": "qos-session", "apiId": "api-qos-session",
    "aefProfiles": [{"aefId": "aef-1", "versions": [{"apiVersion": "v1"}], "securityMethods": ["PKI", "OAUTH"], "domainName": "aef1.example.com"}]
  }]
}`

// fixture is a function's environment without AWS: the embedded store and a local key in a
// temporary directory, seeded with the registry, and a dev CA whose PEM is the truststore.
type fixture struct {
	ca      *devpki.CA
	certs   map[string]string // registry id → client certificate PEM
	cfg     lambdaapp.Config
	logs    *bytes.Buffer
	caFile  string
	dataDir string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ca, err := devpki.NewCA("lambdaapp test CA")
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{ca: ca, certs: map[string]string{}, logs: new(bytes.Buffer), dataDir: t.TempDir()}
	for _, id := range []string{"invoker-1", escapedID, "aef-1"} {
		fx.certs[id] = fx.issue(t, ca, id)
	}
	fx.caFile = filepath.Join(t.TempDir(), "truststore.pem")
	if err := os.WriteFile(fx.caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var doc security.RegistryDoc
	if err := json.Unmarshal([]byte(registry), &doc); err != nil {
		t.Fatal(err)
	}
	seedSet, _, err := settings.Load(settings.Runner, []string{"-store", "embedded", "-signer", "local", "-data", fx.dataDir},
		func(string) string { return "" }, settings.Options{Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	seedCfg := app.Config{Settings: seedSet}
	seed, err := fullapp.Open(context.Background(), seedCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Service.ImportRegistry(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	// The local signer's first key, as the runner publishes it at start.
	keys, err := fullapp.KeyManager(context.Background(), seedCfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}
	fx.cfg, err = lambdaapp.ConfigFromEnv(mapEnv(map[string]string{
		"CAPIF_STORE":           settings.StoreEmbedded,
		"CAPIF_SIGNER":          settings.SignerLocal,
		"CAPIF_DATA":            fx.dataDir,
		"CAPIF_API_ROOT":        apiRoot,
		"CAPIF_TRUSTSTORE_FILE": fx.caFile,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) issue(t testing.TB, ca *devpki.CA, id string) string {
	t.Helper()
	c, err := ca.Client(id, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return string(c.CertPEM)
}

// function builds a Function serving every operation (httpapi.All fits lambdaapp.Build).
func (fx *fixture) function(t *testing.T, build lambdaapp.Build, opts lambdaapp.Options) *lambdaapp.Function {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(fx.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Backends = append(opts.Backends, fullapp.Backends...)
	f, err := lambdaapp.New(context.Background(), fx.cfg, build, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// invoke sends one event through the Lambda handler with a deadline like Lambda's.
func invoke(t *testing.T, f *lambdaapp.Function, req apigwevent.Request) events.APIGatewayProxyResponse {
	t.Helper()
	ev, err := req.Event()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return invokeRaw(t, f, payload, 10*time.Second)
}

func invokeRaw(t *testing.T, f *lambdaapp.Function, payload []byte, timeout time.Duration) events.APIGatewayProxyResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := f.Handle(ctx, payload)
	if err != nil {
		t.Fatalf("Handle returned an error (API Gateway would answer 502): %v", err)
	}
	return resp
}

func header(resp events.APIGatewayProxyResponse, name string) string {
	if v := resp.MultiValueHeaders[http.CanonicalHeaderKey(name)]; len(v) > 0 {
		return v[0]
	}
	return resp.Headers[name]
}

// wantStatus checks the status, and for an error a ProblemDetails carrying it (or, from the token
// endpoint, an OAuth AccessTokenErr).
func wantStatus(t *testing.T, resp events.APIGatewayProxyResponse, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, resp.Body)
	}
	if status < 400 {
		return
	}
	switch ct := header(resp, "Content-Type"); ct {
	case "application/problem+json":
		var pd struct {
			Status int `json:"status"`
		}
		if err := json.Unmarshal([]byte(resp.Body), &pd); err != nil || pd.Status != status {
			t.Fatalf("body is not a ProblemDetails with status %d: %s", status, resp.Body)
		}
	case "application/json":
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(resp.Body), &e); err != nil || e.Error == "" {
			t.Fatalf("body is not an AccessTokenErr: %s", resp.Body)
		}
	default:
		t.Fatalf("error answered with Content-Type %q: %s", ct, resp.Body)
	}
}

func putBody(aefID, apiID, method string) string {
	return `{"notificationDestination":"https://invoker.example.com/n","securityInfo":[{"aefId":"` + aefID +
		`","apiId":"` + apiID + `","prefSecurityMethods":["` + method + `"]}]}`
}

func jsonHeader() map[string][]string {
	return map[string][]string{"Content-Type": {"application/json"}}
}
