package lambda

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/settings"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
)

// function is one Lambda function: its logical id in template.yaml, its main package, the
// httpapi router its main.go serves, whether it signs tokens (its main.go then links both KMS
// signers: lambdaapp.Main(httpapi.X, kmsapp.Backend, kmsapp.Envelope)) and whether it pushes revocations to AEFs
// (it links the CCF's KMS key: kmsapp.CCF).
type function struct {
	logicalID, dir, router string
	build                  lambdaapp.Build
	signs, pushes          bool
}

var functions = []function{
	{"ObtainSecurityMethodFunction", "obtain-security-method", "ObtainSecurityMethod", httpapi.ObtainSecurityMethod, false, false},
	{"ObtainAuthorizationFunction", "obtain-authorization", "ObtainAuthorization", httpapi.ObtainAuthorization, true, false},
	{"ObtainApiInvokerInfoFunction", "obtain-invoker-info", "ObtainAPIInvokerInfo", httpapi.ObtainAPIInvokerInfo, false, false},
	{"RevokeAuthorizationFunction", "revoke-authorization", "RevokeAuthorization", httpapi.RevokeAuthorization, false, true},
}

// mainOf is the one statement of f's main.go.
func (f function) mainOf() string {
	switch {
	case f.signs:
		return "lambdaapp.Main(httpapi." + f.router + ", kmsapp.Backend, kmsapp.Envelope)"
	case f.pushes:
		return "lambdaapp.Main(httpapi." + f.router + ", kmsapp.CCF)"
	}
	return "lambdaapp.Main(httpapi." + f.router + ")"
}

// backends are the back ends f's main.go passes to lambdaapp.Main.
func (f function) backends() []app.Backend {
	switch {
	case f.signs:
		return []app.Backend{kmsapp.Backend, kmsapp.Envelope}
	case f.pushes:
		return []app.Backend{kmsapp.CCF}
	}
	return nil
}

// route is one method + resource path of the API (TS 29.222 §8.5 and the JWKS).
type route struct{ fn, method, resource string }

var routes = []route{
	{"ObtainSecurityMethodFunction", http.MethodPut, "/capif-security/v1/trustedInvokers/{apiInvokerId}"},
	{"ObtainSecurityMethodFunction", http.MethodPost, "/capif-security/v1/trustedInvokers/{apiInvokerId}/update"},
	{"ObtainAuthorizationFunction", http.MethodPost, "/capif-security/v1/securities/{securityId}/token"},
	{"ObtainAuthorizationFunction", http.MethodGet, "/.well-known/jwks.json"},
	{"ObtainAuthorizationFunction", http.MethodGet, "/.well-known/oauth-authorization-server"},
	{"ObtainApiInvokerInfoFunction", http.MethodGet, "/capif-security/v1/trustedInvokers/{apiInvokerId}"},
	{"RevokeAuthorizationFunction", http.MethodDelete, "/capif-security/v1/trustedInvokers/{apiInvokerId}"},
	{"RevokeAuthorizationFunction", http.MethodPost, "/capif-security/v1/trustedInvokers/{apiInvokerId}/delete"},
}

// worker is a function that is no operation of the API: no route and no router; a schedule
// invokes it with the event of its events/ file.
type worker struct {
	logicalID, dir string
	schedule       string           // the Schedule event's expression
	event          string           // below events/
	cmd            settings.Command // the settings it reads
	main           string           // its main.go's one statement
	condition      string           // the template condition it exists under ("" always)
}

var workers = []worker{
	{"DeliverNotificationsFunction", "deliver-notifications", "rate(1 minute)", "deliver-notifications/schedule.json",
		settings.Worker, "lambdaapp.MainWorker(kmsapp.CCF)", ""},
	{"RotateSigningKeysFunction", "rotate-signing-keys", "rate(1 day)", "rotate-signing-keys/schedule.json",
		settings.Rotator, "lambdaapp.MainRotator(kmsapp.Rotation)", "IsEnvelope"},
}

func workerByID(id string) (worker, bool) {
	i := slices.IndexFunc(workers, func(w worker) bool { return w.logicalID == id })
	if i < 0 {
		return worker{}, false
	}
	return workers[i], true
}

// built is every function of the template as the Makefile builds it: the API functions, then
// the workers.
type built struct{ logicalID, dir string }

func allFunctions() []built {
	var out []built
	for _, f := range functions {
		out = append(out, built{f.logicalID, f.dir})
	}
	for _, w := range workers {
		out = append(out, built{w.logicalID, w.dir})
	}
	return out
}

func functionByID(id string) (function, bool) {
	i := slices.IndexFunc(functions, func(f function) bool { return f.logicalID == id })
	if i < 0 {
		return function{}, false
	}
	return functions[i], true
}

// templateRoutes lists the Api events of every API function; a worker has exactly its schedule
// and no other event, and a function of neither table is an error.
func templateRoutes(t *testing.T, tp *template) []route {
	t.Helper()
	var out []route
	for id, r := range tp.resources("AWS::Serverless::Function") {
		evs, _ := tp.functionProps(r)["Events"].(map[string]any)
		if w, ok := workerByID(id); ok {
			checkWorkerEvents(t, id, w, evs)
			continue
		}
		if _, ok := functionByID(id); !ok {
			t.Errorf("%s is in neither the functions nor the workers table", id)
		}
		for name, ev := range evs {
			if path(ev, "Type") != "Api" {
				t.Errorf("%s event %s: type %v, want Api (REST proxy events)", id, name, path(ev, "Type"))
				continue
			}
			if !reflect.DeepEqual(path(ev, "Properties", "RestApiId"), ref("Api")) {
				t.Errorf("%s event %s is not on the Api resource (implicit API?)", id, name)
			}
			out = append(out, route{id, strings.ToUpper(path(ev, "Properties", "Method").(string)), path(ev, "Properties", "Path").(string)})
		}
	}
	return out
}

// checkWorkerEvents: a worker's only event is its EventBridge schedule (no API route).
func checkWorkerEvents(t *testing.T, id string, w worker, evs map[string]any) {
	t.Helper()
	if len(evs) != 1 {
		t.Errorf("%s: %d events, want only its schedule", id, len(evs))
	}
	for name, ev := range evs {
		if path(ev, "Type") != "Schedule" || path(ev, "Properties", "Schedule") != w.schedule {
			t.Errorf("%s event %s: %v, want an EventBridge rule (Type Schedule) on %s", id, name, ev, w.schedule)
		}
		if en, ok := path(ev, "Properties", "Enabled").(bool); ok && !en {
			t.Errorf("%s event %s is disabled", id, name)
		}
		if path(ev, "Properties", "Input") != nil {
			t.Errorf("%s event %s: a fixed Input replaces the scheduled event of %s", id, name, w.event)
		}
	}
}

// Each route of the API is mapped exactly once, to the function whose router serves it.
func TestTemplateRoutes(t *testing.T) {
	tp := loadTemplate(t)
	got := templateRoutes(t, tp)
	seen := map[[2]string]int{}
	for _, r := range got {
		seen[[2]string{r.method, r.resource}]++
		if !slices.Contains(routes, r) {
			t.Errorf("template route %s %s → %s is not an API route of that function", r.method, r.resource, r.fn)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s %s is mapped %d times", k[0], k[1], n)
		}
	}
	for _, r := range routes {
		if !slices.Contains(got, r) {
			t.Errorf("%s %s → %s is missing from the template", r.method, r.resource, r.fn)
		}
	}
	if n := len(tp.resources("AWS::Serverless::Function")); n != len(functions)+len(workers) {
		t.Errorf("%d functions in the template, want %d API functions and %d workers", n, len(functions), len(workers))
	}
	apiFns := map[string]bool{}
	for _, r := range got {
		apiFns[r.fn] = true
	}
	if len(apiFns) != len(functions) {
		t.Errorf("%d functions have routes, want the %d API functions", len(apiFns), len(functions))
	}
}

// The routes each function's router actually serves are the template's routes of that function
// (an escaped id included): anything else gets the router's 404 or 405.
func TestTemplateRoutesAreTheRoutersRoutes(t *testing.T) {
	set, _, err := settings.Load(settings.Runner, []string{"-store", "embedded", "-signer", "local", "-data", t.TempDir()},
		func(string) string { return "" }, settings.Options{Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	a, err := fullapp.Open(context.Background(), app.Config{Settings: set})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, f := range functions {
		h := f.build(a.Service, httpapi.Options{APIRoot: "https://capif.example.com", Logger: discardLogger(), Certificates: func(*http.Request) (*x509.Certificate, error) { return nil, nil }})
		for _, r := range routes {
			ev, err := apigwevent.Request{Method: r.method, Resource: r.resource,
				Params: map[string]string{"apiInvokerId": "inv%1", "securityId": "inv%1"}}.Event()
			if err != nil {
				t.Fatal(err)
			}
			resp := serveEvent(t, h, ev)
			unrouted := resp.StatusCode == http.StatusMethodNotAllowed ||
				resp.StatusCode == http.StatusNotFound && strings.Contains(resp.Body, `"cause":"RESOURCE_NOT_FOUND"`)
			if own := r.fn == f.logicalID; own == unrouted {
				t.Errorf("%s: %s %s answered %d %s (routed by this function: %v)", f.logicalID, r.method, r.resource, resp.StatusCode, resp.Body, own)
			}
		}
	}
}

// Every function is built the way SAM expects and its main.go serves the router named in the
// functions table.
func TestTemplateFunctions(t *testing.T) {
	tp := loadTemplate(t)
	makefile, err := os.ReadFile(filepath.Join(repoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^build-([A-Za-z0-9]+):\s*\n\t\$\(call lambda-build,([a-z0-9-]+)\)`).FindAllStringSubmatch(string(makefile), -1) {
		targets[m[1]] = m[2]
	}
	fns := tp.resources("AWS::Serverless::Function")
	for id, r := range fns {
		t.Run(id, func(t *testing.T) {
			f, isAPI := functionByID(id)
			w, isWorker := workerByID(id)
			if !isAPI && !isWorker {
				t.Fatalf("no such function in the test tables")
			}
			if isWorker {
				f = function{logicalID: w.logicalID, dir: w.dir}
			}
			p := tp.functionProps(r)
			for k, want := range map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap", "CodeUri": ".", "Architectures": []any{"arm64"}} {
				if !reflect.DeepEqual(p[k], want) {
					t.Errorf("%s = %v, want %v", k, p[k], want)
				}
			}
			if got := path(r, "Metadata", "BuildMethod"); got != "makefile" {
				t.Errorf("Metadata.BuildMethod = %v, want makefile", got)
			}
			if to, ok := p["Timeout"].(int); isAPI && (!ok || to < 3 || to > 29) {
				t.Errorf("Timeout %v: want an explicit value under API Gateway's 29 s", p["Timeout"])
			} else if isWorker && (!ok || to < 3 || to > 900) {
				t.Errorf("Timeout %v: want an explicit value within Lambda's 900 s", p["Timeout"])
			}
			if isWorker {
				// A run overlapping the next scheduled one is safe (claims), but Lambda's own
				// retries of a failed run would only repeat what the next minute's run does.
				if got := path(p, "EventInvokeConfig", "MaximumRetryAttempts"); got != 0 {
					t.Errorf("EventInvokeConfig.MaximumRetryAttempts %v, want 0 (the schedule retries)", got)
				}
			}
			if mem, ok := p["MemorySize"].(int); !ok || mem < 128 {
				t.Errorf("MemorySize %v", p["MemorySize"])
			}
			dir, ok := targets[id]
			if !ok {
				t.Fatalf("the Makefile has no build-%s target calling lambda-build", id)
			}
			if dir != f.dir {
				t.Errorf("build-%s builds ./functions/%s, want ./functions/%s", id, dir, f.dir)
			}
			if got := mainCall(t, filepath.Join(repoRoot(), "functions", dir)); isAPI && got != f.mainOf() {
				t.Errorf("functions/%s/main.go: main() is %s, want %s", dir, got, f.mainOf())
			} else if isWorker && got != w.main {
				t.Errorf("functions/%s/main.go: main() is %s, want %s (no router)", dir, got, w.main)
			}
			if cond, _ := r["Condition"].(string); isWorker && cond != w.condition || isAPI && cond != "" {
				t.Errorf("Condition %q, want %q", cond, w.condition)
			}
			// What sam build runs: the target with ARTIFACTS_DIR set.
			out, err := exec.Command("make", "-n", "-C", repoRoot(), "build-"+id, "ARTIFACTS_DIR=/sam/artifacts").CombinedOutput()
			if err != nil {
				t.Fatalf("make -n build-%s: %v\n%s", id, err, out)
			}
			for _, want := range []string{"GOOS=linux GOARCH=arm64 CGO_ENABLED=0", "-tags lambda.norpc", "-trimpath", `-ldflags="-s -w"`,
				`-o "/sam/artifacts/bootstrap" ./functions/` + f.dir} {
				if !strings.Contains(string(out), want) {
					t.Errorf("build-%s does not run %q:\n%s", id, want, out)
				}
			}
		})
	}
	for id := range targets {
		if _, ok := fns[id]; !ok {
			t.Errorf("Makefile target build-%s names no function of the template", id)
		}
	}
}

// mainCall parses a function's main package: it must be package main whose main() is the one
// statement lambdaapp.Main(httpapi.X[, kmsapp.Backend]) or lambdaapp.MainWorker(); it returns
// that call.
func mainCall(t *testing.T, dir string) string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(dir, "main.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name.Name != "main" {
		t.Fatalf("%s is package %s", dir, f.Name.Name)
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "main" || fd.Recv != nil || len(fd.Body.List) != 1 {
			continue
		}
		es, _ := fd.Body.List[0].(*ast.ExprStmt)
		if es == nil {
			continue
		}
		call, _ := es.X.(*ast.CallExpr)
		if call == nil {
			continue
		}
		fn, _ := call.Fun.(*ast.SelectorExpr)
		if fn == nil {
			continue
		}
		if pkg, _ := fn.X.(*ast.Ident); pkg == nil || pkg.Name != "lambdaapp" {
			continue
		}
		// Main's first argument is a router (httpapi.X), MainWorker and MainRotator have none;
		// the others are kmsapp back ends.
		if !slices.Contains([]string{"Main", "MainWorker", "MainRotator"}, fn.Sel.Name) || fn.Sel.Name == "Main" && len(call.Args) == 0 {
			continue
		}
		var args []string
		for i, a := range call.Args {
			arg, _ := a.(*ast.SelectorExpr)
			if arg == nil {
				break
			}
			pkg, _ := arg.X.(*ast.Ident)
			if pkg == nil || i == 0 && fn.Sel.Name == "Main" && pkg.Name != "httpapi" || (i > 0 || fn.Sel.Name != "Main") && pkg.Name != "kmsapp" {
				break
			}
			args = append(args, pkg.Name+"."+arg.Sel.Name)
		}
		if len(args) == len(call.Args) {
			return "lambdaapp." + fn.Sel.Name + "(" + strings.Join(args, ", ") + ")"
		}
	}
	t.Fatalf("%s/main.go: main() is none of lambdaapp.Main(httpapi.X, ...), MainWorker(...), MainRotator(...)", dir)
	return ""
}

// The API: REST, regional, reachable only through the mutual-TLS custom domain with an empty
// base path, throttled, and API Gateway's own errors shaped as problem+json.
func TestTemplateAPI(t *testing.T) {
	tp := loadTemplate(t)
	apis := tp.resources("AWS::Serverless::Api")
	api, ok := apis["Api"]
	if !ok || len(apis) != 1 {
		t.Fatalf("want exactly one AWS::Serverless::Api named Api, got %d", len(apis))
	}
	p := props(api)
	if p["DisableExecuteApiEndpoint"] != true {
		t.Error("DisableExecuteApiEndpoint must be true: the execute-api endpoint bypasses mutual TLS")
	}
	if path(p, "EndpointConfiguration", "Type") != "REGIONAL" {
		t.Error("mutual TLS needs a REGIONAL endpoint")
	}
	ms, _ := p["MethodSettings"].([]any)
	if len(ms) != 1 || path(ms[0], "ResourcePath") != "/*" || path(ms[0], "HttpMethod") != "*" ||
		!reflect.DeepEqual(path(ms[0], "ThrottlingRateLimit"), ref("ThrottlingRateLimit")) ||
		!reflect.DeepEqual(path(ms[0], "ThrottlingBurstLimit"), ref("ThrottlingBurstLimit")) {
		t.Errorf("stage throttling: MethodSettings %v", ms)
	}
	gr, _ := p["GatewayResponses"].(map[string]any)
	for typ, status := range map[string]int{"MISSING_AUTHENTICATION_TOKEN": 404, "DEFAULT_4XX": 0, "DEFAULT_5XX": 0} {
		r, ok := gr[typ]
		if !ok {
			t.Errorf("no gateway response %s", typ)
			continue
		}
		if got, _ := path(r, "StatusCode").(int); got != status {
			t.Errorf("%s: StatusCode %v, want %d", typ, path(r, "StatusCode"), status)
		}
		if ct := path(r, "ResponseParameters", "Headers", "Content-Type"); ct != "'application/problem+json'" {
			t.Errorf("%s: Content-Type %v", typ, ct)
		}
		body, _ := path(r, "ResponseTemplates", "application/json").(string)
		// API Gateway substitutes $context.error.messageString as a quoted JSON string and
		// $context.error.responseType as a bare word.
		body = strings.NewReplacer(`$context.error.messageString`, `"Forbidden"`, `$context.error.responseType`, `ACCESS_DENIED`).Replace(body)
		var pd struct {
			Title  string `json:"title"`
			Status int    `json:"status"`
			Cause  string `json:"cause"`
		}
		if err := json.Unmarshal([]byte(body), &pd); err != nil || pd.Title == "" || pd.Cause == "" || status != 0 && pd.Status != status {
			t.Errorf("%s: body template %q is not a ProblemDetails: %v", typ, body, err)
		}
	}
	// The custom domain: mutual TLS with the truststore parameter, mapped with no base path.
	dom := props(tp.resources("AWS::ApiGateway::DomainName")["ApiDomain"])
	if !reflect.DeepEqual(path(dom, "MutualTlsAuthentication", "TruststoreUri"), ref("TruststoreUri")) ||
		!reflect.DeepEqual(path(dom, "MutualTlsAuthentication", "TruststoreVersion"), ref("TruststoreVersion")) ||
		!reflect.DeepEqual(dom["DomainName"], ref("DomainName")) || !reflect.DeepEqual(dom["RegionalCertificateArn"], ref("CertificateArn")) ||
		dom["SecurityPolicy"] != "TLS_1_2" || !reflect.DeepEqual(path(dom, "EndpointConfiguration", "Types"), []any{"REGIONAL"}) {
		t.Errorf("ApiDomain %v", dom)
	}
	maps := tp.resources("AWS::ApiGateway::BasePathMapping")
	if len(maps) != 1 {
		t.Fatalf("%d base path mappings, want 1", len(maps))
	}
	for _, m := range maps {
		mp := props(m)
		if bp, ok := mp["BasePath"]; ok && bp != "" {
			t.Errorf("BasePath %v: the stage must be mapped with an empty base path", bp)
		}
		if !reflect.DeepEqual(mp["RestApiId"], ref("Api")) || !reflect.DeepEqual(mp["Stage"], ref("Api.Stage")) || !reflect.DeepEqual(mp["DomainName"], ref("ApiDomain")) {
			t.Errorf("mapping %v", mp)
		}
	}
	// The parameters that make the domain are required.
	params := tp.section("Parameters")
	for _, name := range []string{"DomainName", "CertificateArn", "TruststoreUri", "TruststoreVersion"} {
		if _, hasDefault := path(params, name).(map[string]any)["Default"]; hasDefault || path(params, name) == nil {
			t.Errorf("parameter %s must exist and be required (no Default)", name)
		}
	}
}

// The functions' environment is what lambdaapp reads, apiRoot comes from the DomainName
// parameter (not from the Api, which would be circular), and a deployed value set parses.
func TestTemplateEnvironment(t *testing.T) {
	tp := loadTemplate(t)
	for id, r := range tp.resources("AWS::Serverless::Function") {
		env, _ := path(tp.functionProps(r), "Environment", "Variables").(map[string]any)
		// API Gateway's mutual TLS and the function read the same truststore version.
		if !reflect.DeepEqual(env["CAPIF_TRUSTSTORE_URI"], ref("TruststoreUri")) || !reflect.DeepEqual(env["CAPIF_TRUSTSTORE_VERSION"], ref("TruststoreVersion")) ||
			!reflect.DeepEqual(env["CAPIF_METRICS_NAMESPACE"], ref("MetricsNamespace")) {
			t.Errorf("%s: truststore %v version %v, metrics namespace %v", id, env["CAPIF_TRUSTSTORE_URI"], env["CAPIF_TRUSTSTORE_VERSION"], env["CAPIF_METRICS_NAMESPACE"])
		}
		if !reflect.DeepEqual(env["CAPIF_API_ROOT"], map[string]any{"Fn::Sub": "https://${DomainName}"}) {
			t.Errorf("%s: CAPIF_API_ROOT = %v, want !Sub https://${DomainName}", id, env["CAPIF_API_ROOT"])
		}
		for name, v := range env {
			for _, target := range refsIn(v) {
				if target == "Api" || target == "ServerlessRestApi" || target == "ApiDomain" {
					t.Errorf("%s: %s refers to %s (a circular dependency)", id, name, target)
				}
			}
		}
		// Only the token function signs (CAPIF_SIGNER is the Signer parameter); the rotation
		// function reads the same key ids, to record them into an empty key set; the others hold
		// no key id. SigningKey alone signs ES256; under TokenAlg=RS256 SigningKeyRsa signs and
		// SigningKey stays listed for its tokens.
		f, _ := functionByID(id)
		signs, recordsKeys := f.signs, id == "RotateSigningKeysFunction"
		keyIDs := map[string]any{"Fn::If": []any{"IsRs256", map[string]any{"Fn::Join": []any{",", []any{ref("SigningKeyRsa"), ref("SigningKey")}}}, ref("SigningKey")}}
		keysOK := reflect.DeepEqual(env["CAPIF_KMS_KEY_IDS"], keyIDs) && reflect.DeepEqual(env["CAPIF_TOKEN_ALG"], ref("TokenAlg"))
		if signs && (!reflect.DeepEqual(env["CAPIF_SIGNER"], ref("Signer")) || !keysOK) || recordsKeys && !keysOK ||
			!signs && env["CAPIF_SIGNER"] != "none" || !signs && !recordsKeys && env["CAPIF_KMS_KEY_IDS"] != nil {
			t.Errorf("%s: CAPIF_SIGNER %v, CAPIF_KMS_KEY_IDS %v, CAPIF_TOKEN_ALG %v", id, env["CAPIF_SIGNER"], env["CAPIF_KMS_KEY_IDS"], env["CAPIF_TOKEN_ALG"])
		}
		resolved := resolveEnv(t, env, sampleRefs)
		getenv := func(k string) string { return resolved[k] }
		if w, ok := workerByID(id); ok {
			// A worker reads its own settings; the API's (apiRoot, truststore) that the Globals
			// give every function are not its and are ignored.
			ws, _, err := settings.Load(w.cmd, nil, getenv, settings.Options{Name: "worker"})
			if err != nil {
				t.Errorf("%s: the deployed environment does not configure the worker: %v", id, err)
			}
			want := ddbstore.Tables{Contexts: sampleRefs["ContextsTable"], Registry: sampleRefs["RegistryTable"], Outbox: sampleRefs["OutboxTable"]}
			if ws.Store != settings.StoreDynamoDB || ddbstore.Tables(ws.Tables) != want || ws.MetricsNamespace != sampleRefs["MetricsNamespace"] ||
				ws.Signer != settings.SignerNone || ws.AllowLoopbackNotifications || len(ws.Warnings) != 0 {
				t.Errorf("%s: store %q tables %+v namespace %q signer %q loopback %v warnings %q", id, ws.Store, ws.Tables,
					ws.MetricsNamespace, ws.Signer, ws.AllowLoopbackNotifications, ws.Warnings)
			}
			if w.cmd == settings.Rotator && (ws.KMSWrappingKey != sampleRefs["WrappingKey"] || ws.Stack != sampleRefs["AWS::StackName"] ||
				ws.KeyRotationAge != 30*24*time.Hour || ws.TokenAlg != sampleRefs["TokenAlg"] || !slices.Equal(ws.KMSKeyIDs, []string{sampleRefs["SigningKey"]})) {
				t.Errorf("%s: wrapping key %q stack %q rotation %v alg %q legacy keys %q", id, ws.KMSWrappingKey, ws.Stack, ws.KeyRotationAge, ws.TokenAlg, ws.KMSKeyIDs)
			}
			continue
		}
		cfg, err := lambdaapp.ConfigFromEnv(getenv)
		if err != nil {
			t.Errorf("%s: the deployed environment does not configure a function: %v", id, err)
		}
		// The adapter finds each table under the name CloudFormation gave it.
		want := ddbstore.Tables{Contexts: sampleRefs["ContextsTable"], Registry: sampleRefs["RegistryTable"], Outbox: sampleRefs["OutboxTable"]}
		if got := ddbstore.Tables(cfg.Settings.Tables); got != want {
			t.Errorf("%s: the adapter reads tables %+v, want %+v", id, got, want)
		}
		// The iss claim is the issuer setting, by default {apiRoot}; no CCF id sets it.
		if cfg.Truststore.Version != sampleRefs["TruststoreVersion"] || cfg.Settings.MetricsNamespace != sampleRefs["MetricsNamespace"] {
			t.Errorf("%s: truststore %+v, namespace %q", id, cfg.Truststore, cfg.Settings.MetricsNamespace)
		}
		if cfg.Settings.Issuer != cfg.Settings.APIRoot || cfg.Settings.APIRoot != "https://"+sampleRefs["DomainName"] || len(cfg.Settings.Warnings) != 0 {
			t.Errorf("%s: issuer %q, apiRoot %q, warnings %q", id, cfg.Settings.Issuer, cfg.Settings.APIRoot, cfg.Settings.Warnings)
		}
		for _, local := range []string{"CAPIF_TRUSTSTORE_FILE", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS"} {
			if v, ok := env[local]; !ok || v != "" {
				t.Errorf("%s: %s = %v, want declared and empty (set only by local invokes)", id, local, v)
			}
		}
	}
}

// The tables are the DynamoDB adapter's schema (what -create-tables makes locally), on demand,
// with point-in-time recovery, encryption, deletion protection as a parameter that is off for
// the first create, retained except when their own create is rolled back.
func TestTemplateTables(t *testing.T) {
	tp := loadTemplate(t)
	tables := tp.resources("AWS::DynamoDB::Table")
	defs := ddbstore.TablesWithPrefix("").Definitions()
	byName := map[string]string{"contexts": "ContextsTable", "registry": "RegistryTable", "outbox": "OutboxTable"}
	if len(tables) != len(defs) {
		t.Errorf("%d tables in the template, the adapter has %d", len(tables), len(defs))
	}
	for _, def := range defs {
		logical := byName[*def.TableName]
		r, ok := tables[logical]
		if !ok {
			t.Errorf("no table %s for the adapter's %s", logical, *def.TableName)
			continue
		}
		p := props(r)
		var attrs, keys []any
		for _, a := range def.AttributeDefinitions {
			attrs = append(attrs, map[string]any{"AttributeName": *a.AttributeName, "AttributeType": string(a.AttributeType)})
		}
		for _, k := range def.KeySchema {
			keys = append(keys, map[string]any{"AttributeName": *k.AttributeName, "KeyType": string(k.KeyType)})
		}
		if !reflect.DeepEqual(p["AttributeDefinitions"], attrs) || !reflect.DeepEqual(p["KeySchema"], keys) {
			t.Errorf("%s: attributes %v keys %v; the adapter creates %v %v", logical, p["AttributeDefinitions"], p["KeySchema"], attrs, keys)
		}
		if p["BillingMode"] != string(def.BillingMode) {
			t.Errorf("%s: BillingMode %v, adapter %v", logical, p["BillingMode"], def.BillingMode)
		}
		// Only the registry expires items: revoked certificates, on the adapter's attribute.
		ttl := map[string]any{"AttributeName": ddbstore.RegistryTTLAttribute, "Enabled": true}
		if got := p["TimeToLiveSpecification"]; logical == "RegistryTable" && !reflect.DeepEqual(got, ttl) || logical != "RegistryTable" && got != nil {
			t.Errorf("%s: TimeToLiveSpecification %v", logical, got)
		}
		if (p["GlobalSecondaryIndexes"] != nil) != (len(def.GlobalSecondaryIndexes) > 0) || (p["LocalSecondaryIndexes"] != nil) != (len(def.LocalSecondaryIndexes) > 0) {
			t.Errorf("%s: indexes differ from the adapter's", logical)
		}
		if path(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true || path(p, "SSESpecification", "SSEEnabled") != true {
			t.Errorf("%s: PITR and SSE must be enabled", logical)
		}
		if !reflect.DeepEqual(p["DeletionProtectionEnabled"], ref("DeletionProtection")) {
			t.Errorf("%s: DeletionProtectionEnabled %v", logical, p["DeletionProtectionEnabled"])
		}
		// A failed first create deletes the new tables (the retry does not meet "already
		// exists"); once created they survive stack deletion and replacement.
		if r["DeletionPolicy"] != "RetainExceptOnCreate" || r["UpdateReplacePolicy"] != "Retain" {
			t.Errorf("%s: DeletionPolicy %v, UpdateReplacePolicy %v; want RetainExceptOnCreate, Retain", logical, r["DeletionPolicy"], r["UpdateReplacePolicy"])
		}
		// <stack>-<name>: the adapter's name for the prefix "<stack>-" (what capif-admin uses).
		if want := map[string]any{"Fn::Sub": "${AWS::StackName}-" + *def.TableName}; !reflect.DeepEqual(p["TableName"], want) {
			t.Errorf("%s: TableName %v, want %v", logical, p["TableName"], want)
		}
	}
}

// sample values of the template's references, as CloudFormation would resolve them.
var sampleRefs = map[string]string{
	"DomainName":             "capif.example.com",
	"TruststoreUri":          "s3://trust-bucket/mtls/truststore.pem",
	"TruststoreVersion":      "Qm9vdHN0cmFwVmVyc2lvbi5JZC4x",
	"MetricsNamespace":       "CAPIF/Security",
	"TokenTtl":               "600s",
	"NotifyTimeout":          "2s",
	"SecurityMethodPriority": "",
	"ContextsTable":          "capif-security-contexts",
	"RegistryTable":          "capif-security-registry",
	"OutboxTable":            "capif-security-outbox",
	"SigningKey":             "1234abcd-12ab-34cd-56ef-1234567890ab",
	"SigningKeyRsa":          "9abcabcd-12ab-34cd-56ef-1234567890ab",
	"TokenAlg":               "ES256",
	"CcfClientKey":           "5678abcd-12ab-34cd-56ef-1234567890ab",
	"CcfCertificateUri":      "s3://ccf-bucket/ccf/ccf.pem",
	"CcfCertificateVersion":  "Q2NmQ2VydGlmaWNhdGUuMQ",
	"AefCaUri":               "s3://ccf-bucket/ccf/aef-ca.pem",
	"AefCaVersion":           "QWVmQ2EuMQ",
	"Signer":                 "kms-envelope",
	"KeyRotationDays":        "30",
	"WrappingKey":            "0aaaabcd-12ab-34cd-56ef-1234567890ab",
	"AWS::StackName":         "capif-security",
}

// sampleConditions are the template's conditions under sampleRefs.
var sampleConditions = map[string]bool{"IsRs256": false, "IsEnvelope": true, "HasCcfCertificate": true, "HasCcfCertificateVersion": true, "HasAefCa": true, "HasAefCaVersion": true,
	"HasAlarmTopic": false, "HasHostedZone": false, "HasOwnershipVerification": false}

// ifValue resolves an Fn::If under sampleConditions: the branch taken, and false for
// AWS::NoValue.
func ifValue(t *testing.T, v any) (any, bool) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		return v, true
	}
	args, ok := m["Fn::If"].([]any)
	if !ok {
		return v, true
	}
	cond, known := sampleConditions[args[0].(string)]
	if len(args) != 3 || !known {
		t.Fatalf("Fn::If %v: unknown condition or form", args)
	}
	branch := args[2]
	if cond {
		branch = args[1]
	}
	if reflect.DeepEqual(branch, ref("AWS::NoValue")) {
		return nil, false
	}
	return ifValue(t, branch)
}

func resolveEnv(t *testing.T, env map[string]any, refs map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range env {
		v, _ := ifValue(t, v)
		switch v := v.(type) {
		case string:
			out[k] = v
		case map[string]any:
			if r, ok := v["Ref"].(string); ok {
				val, known := refs[r]
				if !known {
					t.Fatalf("%s: no sample value for Ref %s", k, r)
				}
				out[k] = val
				continue
			}
			if j, ok := v["Fn::Join"].([]any); ok && len(j) == 2 {
				var parts []string
				for _, item := range j[1].([]any) {
					r, _ := item.(map[string]any)["Ref"].(string)
					val, known := refs[r]
					if !known {
						t.Fatalf("%s: no sample value for Ref %s", k, r)
					}
					parts = append(parts, val)
				}
				out[k] = strings.Join(parts, j[0].(string))
				continue
			}
			if s, ok := v["Fn::Sub"].(string); ok {
				for name, val := range refs {
					s = strings.ReplaceAll(s, "${"+name+"}", val)
				}
				if strings.Contains(s, "${") {
					t.Fatalf("%s: unresolved !Sub %q", k, s)
				}
				out[k] = s
				continue
			}
			t.Fatalf("%s: unexpected intrinsic %v", k, v)
		default:
			t.Fatalf("%s: unexpected value %v", k, v)
		}
	}
	return out
}

// The signing keys: P-256 for ES256, RSA 2048 for RS256, no automatic rotation (asymmetric keys
// have none), a key policy that delegates to IAM without naming the function roles (no circular
// reference), and the capif:stack tag the token role's grants follow. The CCF's client
// certificate key is the same kind of key, kept apart (its own grants, no tag).
func TestTemplateSigningKey(t *testing.T) {
	tp := loadTemplate(t)
	keys := tp.resources("AWS::KMS::Key")
	if want := []string{"CcfClientKey", "SigningKey", "SigningKeyRsa", "WrappingKey"}; !slices.Equal(slices.Sorted(maps.Keys(keys)), want) {
		t.Fatalf("want the AWS::KMS::Keys %v; have %v", want, slices.Sorted(maps.Keys(keys)))
	}
	for name, spec := range map[string]string{"SigningKey": "ECC_NIST_P256", "CcfClientKey": "ECC_NIST_P256", "SigningKeyRsa": "RSA_2048"} {
		t.Run(name, func(t *testing.T) { checkKey(t, keys[name], spec) })
	}
	tag := []any{map[string]any{"Key": "capif:stack", "Value": ref("AWS::StackName")}}
	for name, tagged := range map[string]bool{"SigningKey": true, "SigningKeyRsa": true, "CcfClientKey": false, "WrappingKey": false} {
		if got := props(keys[name])["Tags"]; tagged != reflect.DeepEqual(got, tag) || !tagged && got != nil {
			t.Errorf("%s: tags %v; only the token-signing keys carry capif:stack", name, got)
		}
	}
	// The RSA key exists only under TokenAlg=RS256, which is optional (ES256 by default): an
	// existing stack updates with no new value and SigningKey unchanged (a tag is added in place).
	if keys["SigningKeyRsa"]["Condition"] != "IsRs256" || keys["SigningKey"]["Condition"] != nil {
		t.Errorf("conditions: SigningKeyRsa %v, SigningKey %v", keys["SigningKeyRsa"]["Condition"], keys["SigningKey"]["Condition"])
	}
	params, _ := tp.doc["Parameters"].(map[string]any)
	if param, _ := params["TokenAlg"].(map[string]any); param["Default"] != "ES256" || !reflect.DeepEqual(param["AllowedValues"], []any{"ES256", "RS256"}) {
		t.Errorf("TokenAlg: %v", param)
	}
	if param, _ := params["Signer"].(map[string]any); param["Default"] != "kms" || !reflect.DeepEqual(param["AllowedValues"], []any{"kms", "kms-envelope"}) {
		t.Errorf("Signer: %v", param)
	}
	if param, _ := params["KeyRotationDays"].(map[string]any); param["Default"] != 30 || param["MinValue"] != 1 {
		t.Errorf("KeyRotationDays: %v", param)
	}
	if desc, _ := props(keys["SigningKey"])["Description"].(map[string]any); !reflect.DeepEqual(desc, map[string]any{"Fn::Sub": "${AWS::StackName} CAPIF access token signing key (ES256)"}) {
		t.Errorf("SigningKey's properties changed: %v", props(keys["SigningKey"]))
	}
}

// The wrapping key (Signer=kms-envelope): symmetric, retained, and a key policy under which only
// the token role unwraps, only the rotation role makes key pairs, both bound to the stack's
// encryption context, and no one wraps a key of their own.
func TestTemplateWrappingKey(t *testing.T) {
	tp := loadTemplate(t)
	key := tp.resources("AWS::KMS::Key")["WrappingKey"]
	p := props(key)
	if key["Condition"] != "IsEnvelope" || key["DeletionPolicy"] != "Retain" || p["KeySpec"] != "SYMMETRIC_DEFAULT" || p["KeyUsage"] != "ENCRYPT_DECRYPT" {
		t.Errorf("WrappingKey: condition %v, deletion %v, %v/%v", key["Condition"], key["DeletionPolicy"], p["KeySpec"], p["KeyUsage"])
	}
	stack := ref("AWS::StackName")
	bound := map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:capif:stack": stack},
		"ForAllValues:StringEquals": map[string]any{"kms:EncryptionContextKeys": []any{"capif:stack", "capif:kid"}}}
	boundPairs := map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:capif:stack": stack, "kms:DataKeyPairSpec": []any{"ECC_NIST_P256", "RSA_2048"}},
		"ForAllValues:StringEquals": map[string]any{"kms:EncryptionContextKeys": []any{"capif:stack", "capif:kid"}}}
	root := map[string]any{"AWS": map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
	anyone := map[string]any{"AWS": "*"}
	want := []map[string]any{
		{"Effect": "Allow", "Principal": root, "Action": "kms:*", "Resource": "*"},
		{"Effect": "Deny", "Principal": anyone, "Action": "kms:Decrypt", "Resource": "*",
			"Condition": map[string]any{"StringNotEquals": map[string]any{"aws:PrincipalArn": getAtt("TokenRole", "Arn")}}},
		{"Effect": "Allow", "Principal": map[string]any{"AWS": getAtt("TokenRole", "Arn")}, "Action": "kms:Decrypt", "Resource": "*", "Condition": bound},
		{"Effect": "Allow", "Principal": map[string]any{"AWS": getAtt("RotationRole", "Arn")}, "Action": "kms:GenerateDataKeyPairWithoutPlaintext",
			"Resource": "*", "Condition": boundPairs},
		{"Effect": "Deny", "Principal": anyone, "Action": []any{"kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKeyPair"}, "Resource": "*"},
	}
	stmts, _ := path(p["KeyPolicy"], "Statement").([]any)
	if len(stmts) != len(want) {
		t.Fatalf("%d key policy statements, want %d", len(stmts), len(want))
	}
	for i, st := range stmts {
		got := maps.Clone(st.(map[string]any))
		delete(got, "Sid")
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("statement %d (%v):\n got %v\nwant %v", i, path(st, "Sid"), got, want[i])
		}
	}
	// The roles' own grants carry the same conditions (TestIAMPolicyIsExactlyWhatEachFunctionCalls
	// checks the calls against them).
	for role, wantCond := range map[string]map[string]any{"TokenPolicy": bound, "RotationPolicy": boundPairs} {
		found := false
		for _, st := range path(props(tp.resources("AWS::IAM::Policy")[role]), "PolicyDocument", "Statement").([]any) {
			st, _ := ifValue(t, st)
			if reflect.DeepEqual(path(st, "Resource"), []any{getAtt("WrappingKey", "Arn")}) {
				found = true
				if !reflect.DeepEqual(path(st, "Condition"), wantCond) {
					t.Errorf("%s: the grant on WrappingKey has condition %v", role, path(st, "Condition"))
				}
			}
		}
		if !found {
			t.Errorf("%s grants nothing on WrappingKey", role)
		}
	}
}

func checkKey(t *testing.T, key map[string]any, spec string) {
	p := props(key)
	if p["KeySpec"] != spec || p["KeyUsage"] != "SIGN_VERIFY" {
		t.Errorf("KeySpec %v KeyUsage %v, want %s", p["KeySpec"], p["KeyUsage"], spec)
	}
	if _, ok := p["EnableKeyRotation"]; ok {
		t.Error("EnableKeyRotation is not allowed on an asymmetric key")
	}
	policy := p["KeyPolicy"]
	if refs := refsIn(policy); len(refs) != 0 {
		t.Errorf("the key policy refers to %v; it must not name template resources (circular)", refs)
	}
	stmts, _ := path(policy, "Statement").([]any)
	rootOK := false
	for _, s := range stmts {
		if reflect.DeepEqual(path(s, "Principal", "AWS"), map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}) && path(s, "Effect") == "Allow" {
			rootOK = true
		}
	}
	if !rootOK {
		t.Error("the key policy does not grant the account root (IAM delegation)")
	}
	if key["DeletionPolicy"] != "Retain" {
		t.Error("the key must be retained: deleting it invalidates every outstanding token's kid, or the CCF's certificate")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveEvent runs an event through the proxy into a handler, as a function does.
func serveEvent(t *testing.T, h http.Handler, ev events.APIGatewayProxyRequest) events.APIGatewayProxyResponse {
	t.Helper()
	resp, err := httpadapter.New(h).ProxyWithContext(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Each bootstrap links the back ends its function uses and no others (each costs bootstrap size
// and cold start): the KMS client (and the signers over it) only where a function signs tokens,
// pushes to AEFs or rotates keys; the embedded store nowhere.
func TestFunctionsLinkOnlyTheirBackEnds(t *testing.T) {
	const (
		kmsClient = "github.com/aws/aws-sdk-go-v2/service/kms"
		envelope  = "github.com/capifcore/capif-security/shared/signer/envelope"
		embedded  = "github.com/capifcore/capif-security/shared/store/embedded"
		bbolt     = "go.etcd.io/bbolt"
	)
	for _, f := range allFunctions() {
		cmd := exec.Command("go", "list", "-deps", "./functions/"+f.dir)
		cmd.Dir = repoRoot()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps ./functions/%s: %v", f.dir, err)
		}
		deps := strings.Fields(string(out))
		api, _ := functionByID(f.logicalID)
		_, worker := workerByID(f.logicalID)
		kms := api.signs || api.pushes || worker
		for pkg, want := range map[string]bool{kmsClient: kms, envelope: kms, embedded: false, bbolt: false} {
			if got := slices.Contains(deps, pkg); got != want {
				t.Errorf("%s links %s: %v, want %v", f.logicalID, pkg, got, want)
			}
		}
	}
}
