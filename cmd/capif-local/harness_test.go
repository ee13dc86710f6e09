package main

// The harness of the runner's HTTP suite: back-end set-ups, an in-process runner over real TLS,
// clients holding dev-CA client certificates, and one checking RoundTripper through which every
// response of the suite passes (3GPP schema validation, header rules, access-log bookkeeping).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// --- back-end set-ups -----------------------------------------------------------------------

// backend is one back-end set-up the whole suite runs against.
type backend struct {
	name string
	// args returns the runner flags selecting this back end for one fresh data set (a unique
	// table prefix, a key id …). It is called once per fresh runner; a restart of that runner
	// reuses the same flags, so it must see the same data. It may skip or fail through
	// testenv when a peer is missing.
	args func(t *testing.T) []string
	// throttles: the store may answer a bounded 503 + Retry-After under load. The embedded store
	// never does, so any 5xx there fails the suite.
	throttles bool
}

// backends is the table of set-ups; each one runs the identical list of subtests (suite).
// Adding one is a few lines, e.g.
//
//	{name: "dynamodb+kms", throttles: true, args: func(t *testing.T) []string {
//		testenv.DynamoDBEndpoint(t); testenv.KMSEndpoint(t)
//		return []string{"-store", "dynamodb", "-signer", "kms", "-kms-key-ids", keyID(t),
//			"-table-prefix", uniquePrefix(t), "-create-tables"}
//	}},
var backends = []backend{
	{name: "embedded+local", args: func(*testing.T) []string { return []string{"-store", "embedded", "-signer", "local"} }},
}

// --- the 3GPP contract ----------------------------------------------------------------------

type specRoute struct {
	template string
	segs     []string
	item     *openapi3.PathItem
}

// contract is the bundled Security API of one release. The endpoints serve Rel-18 and Rel-19
// clients alike, so every response must match both documents: loadContract returns the Rel-18
// one with the Rel-19 one in rel19, loaded once per process.
type contract struct {
	release        string
	doc            *openapi3.T
	routes         []specRoute
	problemDetails *openapi3.Schema
	rel19          *contract
}

var (
	contractOnce sync.Once
	contractDoc  *contract
	contractErr  error
)

func loadContract(t testing.TB) *contract {
	t.Helper()
	dir := testenv.SpecDir(t)
	contractOnce.Do(func() {
		rel18, err := loadBundle("Rel-18", filepath.Join(dir, "bundled", "CAPIF_Security_API.bundled.yaml"))
		if err != nil {
			contractErr = err
			return
		}
		if rel18.rel19, err = loadBundle("Rel-19", filepath.Join(dir, "rel19", "bundled", "CAPIF_Security_API.bundled.yaml")); err != nil {
			contractErr = err
			return
		}
		contractDoc = rel18
	})
	if contractErr != nil {
		t.Fatalf("loading the 3GPP Security API: %v", contractErr)
	}
	return contractDoc
}

func loadBundle(release, path string) (*contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", release, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("%s: %w", release, err)
	}
	c := &contract{release: release, doc: doc}
	for tmpl, item := range doc.Paths.Map() {
		c.routes = append(c.routes, specRoute{template: tmpl, segs: strings.Split(strings.Trim(tmpl, "/"), "/"), item: item})
	}
	pd := doc.Components.Schemas["ProblemDetails"]
	if pd == nil || pd.Value == nil {
		return nil, fmt.Errorf("the %s bundle has no ProblemDetails schema", release)
	}
	c.problemDetails = pd.Value
	return c, nil
}

// releases are the documents a response must match: this one and, for the Rel-18 contract, the
// Rel-19 one.
func (c *contract) releases() []*contract {
	if c.rel19 == nil {
		return []*contract{c}
	}
	return []*contract{c, c.rel19}
}

// route finds the spec operation of an escaped request path below the API base, or nil.
func (c *contract) route(method, escapedPath string) *routers.Route {
	rest, ok := strings.CutPrefix(escapedPath, httpapi.Base+"/")
	if !ok {
		return nil
	}
	segs := strings.Split(rest, "/")
	for _, r := range c.routes {
		if !segsMatch(r.segs, segs) {
			continue
		}
		op := r.item.GetOperation(method)
		if op == nil {
			return nil
		}
		return &routers.Route{Spec: c.doc, Path: r.template, PathItem: r.item, Method: method, Operation: op}
	}
	return nil
}

// segsMatch matches a path template on escaped segments, like httpapi's router: a parameter is
// one non-empty segment that unescapes.
func segsMatch(pattern, segs []string) bool {
	if len(pattern) != len(segs) {
		return false
	}
	for i, p := range pattern {
		if strings.HasPrefix(p, "{") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return false
			}
			continue
		}
		if p != segs[i] {
			return false
		}
	}
	return true
}

// routeTable is the runner's router, for its route table only (no handler is called).
var routeTable = httpapi.All(security.New(nil, nil, nil, nil, nil, security.Config{}), httpapi.Options{})

// operationOf is the operation name the access log must report for a request.
func operationOf(method, escapedPath string) string {
	return routeTable.Operation(method, escapedPath)
}

func isTokenRoute(method, escapedPath string) bool {
	return operationOf(method, escapedPath) == security.ObtainAuthorization.String()
}

// --- the runner -----------------------------------------------------------------------------

// seen is one response the suite received, for the access-log check.
type seen struct {
	requestID, method, path, operation, caller string
	status                                     int
}

// runner is one in-process capif-local on a data directory.
type runner struct {
	t        *testing.T
	backend  backend
	baseArgs []string // back-end flags, reused on restart
	args     []string // every flag it was started with
	cfg      config
	dataDir  string
	url      string
	ca       *devpki.CA
	contract *contract
	logs     *testenv.Buffer

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error

	mu         sync.Mutex
	seen       []seen
	unanswered int               // requests that got no response to check (the client went away)
	secrets    map[string]string // secret → what it is; must never reach the log

	certs                 sync.Map // id → tls.Certificate
	nextPlain, nextSecret atomic.Int64
}

// startRunner starts a runner with a fresh data directory and the test registry.
func startRunner(t *testing.T, b backend, extra ...string) *runner {
	t.Helper()
	return startRunnerWith(t, b, testRegistry(), extra...)
}

// startRunnerWith starts a runner with a fresh data directory and the registry doc.
func startRunnerWith(t *testing.T, b backend, doc security.RegistryDoc, extra ...string) *runner {
	t.Helper()
	dir := t.TempDir()
	regPath := filepath.Join(dir, "registry.json")
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r := launch(t, b, b.args(t), filepath.Join(dir, "data"), append([]string{"-registry", regPath}, extra...))
	for _, inv := range doc.APIInvokers {
		if inv.OnboardingSecret != "" {
			r.secret(inv.OnboardingSecret, "onboarding secret")
		}
	}
	return r
}

// restart stops r (checking its log) and starts a runner on the same data directory and back-end
// flags, without importing the registry again: everything must come from the stored state.
func (r *runner) restart(t *testing.T, extra ...string) *runner {
	t.Helper()
	r.stop(t)
	r2 := launch(t, r.backend, r.baseArgs, r.dataDir, extra)
	r.mu.Lock()
	for s, what := range r.secrets {
		r2.secret(s, what)
	}
	r.mu.Unlock()
	return r2
}

func launch(t *testing.T, b backend, baseArgs []string, dataDir string, extra []string) *runner {
	t.Helper()
	args := append([]string{"-addr", "127.0.0.1:0", "-data", dataDir, "-issuer", "https://ccf.test", "-log-level", "debug", "-log-format", "json"}, baseArgs...)
	args = append(args, extra...)
	cfg, err := parseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig %q: %v", args, err)
	}
	r := &runner{
		t: t, backend: b, baseArgs: baseArgs, args: args, cfg: cfg, dataDir: dataDir,
		contract: loadContract(t), logs: &testenv.Buffer{}, done: make(chan error, 1),
		secrets: map[string]string{},
	}
	logger := newLogger(cfg, r.logs, false)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	ready := make(chan string, 1)
	go func() { r.done <- run(ctx, cfg, logger, func(u string) { ready <- u }) }()
	select {
	case r.url = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("runner did not start: %v\nlog:\n%s", err, r.logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("runner did not become ready within 30s")
	}
	t.Cleanup(func() { r.stop(t) })
	if r.ca, err = devpki.LoadOrCreateCA(dataDir); err != nil {
		t.Fatal(err)
	}
	return r
}

// stop cancels the runner, waits for run to return and checks the access log against every
// response the suite received from it. Idempotent.
func (r *runner) stop(t testing.TB) error {
	t.Helper()
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case r.stopErr = <-r.done:
		case <-time.After(30 * time.Second):
			r.stopErr = fmt.Errorf("run did not return within 30s of cancellation")
		}
		if r.stopErr != nil {
			t.Errorf("runner %s: run returned %v", r.url, r.stopErr)
		}
		r.checkLog(t)
		r.mu.Lock()
		t.Logf("runner %s: %d responses checked against the contract and the access log", r.url, len(r.seen))
		r.mu.Unlock()
	})
	return r.stopErr
}

// secret remembers a value that the log must never contain.
func (r *runner) secret(value, what string) {
	if value == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets[value] = what
}

// checkLog: every line is JSON, or text (key=value) when the runner writes text; there is exactly
// one "request" line per response received, with requestId, operation, caller, status and
// durationMs as the response implies; no line holds an access token, a PSK, a client_secret or a
// PEM.
func (r *runner) checkLog(t testing.TB) {
	t.Helper()
	text := r.logs.String()
	type line struct {
		RequestID, Operation, Caller string
		Status                       int
	}
	byID := map[string][]line{}
	requests := 0
	for _, raw := range strings.Split(strings.TrimSpace(text), "\n") {
		if raw == "" {
			continue
		}
		f, err := logFields(raw, r.cfg.LogFormat)
		if err != nil {
			t.Errorf("log line is not %s: %q (%v)", r.cfg.LogFormat, raw, err)
			continue
		}
		if f["msg"] != "request" {
			continue
		}
		requests++
		status, serr := strconv.Atoi(f["status"])
		d, derr := strconv.ParseFloat(f["durationMs"], 64)
		_, hasID := f["requestId"]
		_, hasOp := f["operation"]
		_, hasCaller := f["caller"]
		if !hasID || !hasOp || !hasCaller || serr != nil || derr != nil {
			t.Errorf("request log line lacks requestId/operation/caller/status/durationMs: %s", raw)
			continue
		}
		if d < 0 {
			t.Errorf("negative durationMs: %s", raw)
		}
		byID[f["requestId"]] = append(byID[f["requestId"]], line{f["requestId"], f["operation"], f["caller"], status})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if requests != len(r.seen)+r.unanswered {
		t.Errorf("runner %s: %d request log lines for %d responses received and %d requests abandoned", r.url, requests, len(r.seen), r.unanswered)
	}
	for _, s := range r.seen {
		ls := byID[s.requestID]
		if len(ls) != 1 {
			t.Errorf("%s %s (%d): %d log lines with requestId %q, want 1", s.method, s.path, s.status, len(ls), s.requestID)
			continue
		}
		l := ls[0]
		if l.Status != s.status || l.Operation != s.operation || l.Caller != s.caller {
			t.Errorf("%s %s: logged status=%d operation=%q caller=%q, want %d %q %q", s.method, s.path, l.Status, l.Operation, l.Caller, s.status, s.operation, s.caller)
		}
	}
	for secret, what := range r.secrets {
		if strings.Contains(text, secret) {
			t.Errorf("the log contains a %s", what)
		}
	}
	if strings.Contains(text, "-----BEGIN") {
		t.Errorf("the log contains a PEM block")
	}
}

// logFields are the top-level members of one log line, as text: a JSON object (json), or the
// key=value pairs of slog's text handler, values quoted when they need it (text).
func logFields(raw, format string) (map[string]string, error) {
	out := map[string]string{}
	if format == settings.LogJSON {
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return nil, err
		}
		for k, v := range m {
			if s, ok := v.(string); ok {
				out[k] = s
			} else {
				b, _ := json.Marshal(v)
				out[k] = string(b)
			}
		}
		return out, nil
	}
	for rest := raw; rest != ""; {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return nil, fmt.Errorf("not key=value at %q", rest)
		}
		var value string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return nil, err
			}
			value, _ = strconv.Unquote(q)
			after = after[len(q):]
		} else {
			value, after, _ = strings.Cut(after, " ")
			after = " " + after
		}
		out[key] = value
		rest = strings.TrimPrefix(after, " ")
	}
	return out, nil
}

// --- clients --------------------------------------------------------------------------------

// client calls the runner as one identity; every response goes through the checker.
type client struct {
	r  *runner
	t  testing.TB
	id string // the certificate CN; "" for no certificate
	hc *http.Client
}

// as returns a client presenting a dev-CA certificate whose CN is id.
func (r *runner) as(t testing.TB, id string) *client {
	t.Helper()
	cert, ok := r.certs.Load(id)
	if !ok {
		issued, err := r.ca.Client(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ = r.certs.LoadOrStore(id, issued.TLS)
	}
	return r.newClient(t, id, []tls.Certificate{cert.(tls.Certificate)}, id)
}

// anonymous returns a client presenting no certificate.
func (r *runner) anonymous(t testing.TB) *client {
	return r.newClient(t, "", nil, "")
}

// foreign returns a client whose certificate (CN id) comes from another CA.
func (r *runner) foreign(t testing.TB, id string) *client {
	t.Helper()
	other, err := devpki.NewCA("not the runner's CA")
	if err != nil {
		t.Fatal(err)
	}
	issued, err := other.Client(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The server never sees a verified identity: the log must show no caller.
	return r.newClient(t, "", []tls.Certificate{issued.TLS}, id)
}

func (r *runner) newClient(t testing.TB, logID string, certs []tls.Certificate, id string) *client {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: r.ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
	}
	t.Cleanup(tr.CloseIdleConnections)
	c := &client{r: r, t: t, id: id}
	c.hc = &http.Client{Transport: &checking{base: tr, r: r, t: t, caller: logID}, Timeout: 30 * time.Second}
	return c
}

// checking is the RoundTripper every request of the suite goes through.
type checking struct {
	base   http.RoundTripper
	r      *runner
	t      testing.TB
	caller string // the identity the access log must report for API operations
}

func (c *checking) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c.r.check(c.t, c.caller, req, resp, body)
	return resp, nil
}

// check applies the rules every response obeys.
func (r *runner) check(t testing.TB, caller string, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	path, status := req.URL.EscapedPath(), resp.StatusCode
	ctype := resp.Header.Get("Content-Type")
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s %s → %d: %s\nbody: %.2000s", req.Method, path, status, fmt.Sprintf(format, args...), body)
	}
	if status >= 500 && !(status == http.StatusServiceUnavailable && r.backend.throttles && resp.Header.Get("Retry-After") != "") {
		fail("a server error")
	}
	op := operationOf(req.Method, path)
	if op == "" && req.Method == http.MethodGet && path == r.metadataPathForm() {
		op = httpapi.NameMetadata
	}
	rec := seen{requestID: resp.Header.Get("X-Request-Id"), method: req.Method, path: path, operation: op, status: status}
	if op != "" && op != httpapi.NameJWKS && op != httpapi.NameMetadata {
		rec.caller = caller
	}
	if rec.requestID == "" {
		fail("no X-Request-Id header")
	}
	r.mu.Lock()
	r.seen = append(r.seen, rec)
	r.mu.Unlock()

	token := isTokenRoute(req.Method, path)
	if token && (resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache") {
		fail("token responses need Cache-Control: no-store and Pragma: no-cache, got %q / %q", resp.Header.Get("Cache-Control"), resp.Header.Get("Pragma"))
	}
	if status == http.StatusNoContent && len(body) > 0 {
		fail("204 with a body")
	}

	// Schema validation: the spec operation when there is one, else ProblemDetails (404/405)
	// or the JWKS structure.
	switch {
	case r.contract.route(req.Method, path) != nil:
		for _, c := range r.contract.releases() {
			route := c.route(req.Method, path)
			switch {
			case route == nil:
				fail("%s has no operation %s %s", c.release, req.Method, path)
				continue
			case route.Operation.Responses.Status(status) == nil:
				fail("status %d is not declared for %s %s in %s", status, req.Method, route.Path, c.release)
				continue
			}
			err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route},
				Status:                 status,
				Header:                 resp.Header,
				Body:                   io.NopCloser(bytes.NewReader(body)),
				Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
			})
			if err != nil {
				fail("does not match the %s 3GPP schema: %v", c.release, err)
			}
		}
	case op == httpapi.NameJWKS && status == http.StatusOK:
		checkJWKS(t, ctype, body)
	case op == httpapi.NameMetadata && status == http.StatusOK:
		checkMetadata(t, ctype, body)
	default:
		if ctype != "application/problem+json" {
			fail("Content-Type %q outside the API, want application/problem+json", ctype)
			break
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			fail("problem+json does not parse: %v", err)
			break
		}
		for _, c := range r.contract.releases() {
			if err := c.problemDetails.VisitJSON(v, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
				fail("does not match the %s ProblemDetails: %v", c.release, err)
			}
		}
	}

	// Error bodies: AccessTokenErr for the token endpoint's 400/401, ProblemDetails otherwise.
	if status >= 400 {
		if token && (status == 400 || status == 401) {
			if ctype != "application/json" {
				fail("token error Content-Type %q, want application/json", ctype)
			}
		} else {
			var pd capif.ProblemDetails
			switch {
			case ctype != "application/problem+json":
				fail("error Content-Type %q, want application/problem+json", ctype)
			case json.Unmarshal(body, &pd) != nil:
				fail("ProblemDetails does not parse")
			case pd.Status != status || pd.Title == "" || pd.Detail == "" || pd.Cause == "":
				fail("ProblemDetails needs status=%d, title, detail and cause", status)
			}
		}
	}

	// Secrets: responses carrying a PSK are not cacheable; tokens and PSKs are remembered so the
	// log check can look for them.
	if (status == http.StatusOK || status == http.StatusCreated) && strings.HasPrefix(path, httpapi.Base+"/trustedInvokers/") {
		var ss capif.ServiceSecurity
		if err := json.Unmarshal(body, &ss); err == nil {
			for _, e := range ss.SecurityInfo {
				if e.SelSecurityMethod == capif.PSK && e.AuthenticationInfo != "" {
					r.secret(e.AuthenticationInfo, "PSK")
					if resp.Header.Get("Cache-Control") != "no-store" {
						fail("a response carrying a PSK without Cache-Control: no-store")
					}
				}
			}
		}
	}
	if token && status == http.StatusOK {
		var tr capif.AccessTokenRsp
		if err := json.Unmarshal(body, &tr); err == nil {
			r.secret(tr.AccessToken, "access token")
			if parts := strings.Split(tr.AccessToken, "."); len(parts) == 3 {
				r.secret(parts[2], "access token signature")
			}
		}
	}
}

// checkJWKS checks the JWKS structurally (it has no 3GPP schema): EC P-256 ES256 signing keys
// with distinct kids and coordinates on the curve.
func checkJWKS(t testing.TB, ctype string, body []byte) {
	t.Helper()
	if ctype != "application/json" {
		t.Errorf("JWKS Content-Type %q", ctype)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) == 0 {
		t.Errorf("JWKS has no keys (%v): %s", err, body)
		return
	}
	kids := map[string]bool{}
	for _, k := range set.Keys {
		str := func(name string) string { s, _ := k[name].(string); return s }
		members := []string{"kty", "crv", "x", "y", "kid", "alg", "use"}
		switch {
		case str("use") != "sig" || str("kid") == "":
			t.Errorf("JWK is not a signing key with a kid: %v", k)
		case str("kty") == "RSA":
			// RS256: an RSA 2048 key with e = 65537, and nothing private (d, p, q, dp, dq, qi).
			members = []string{"kty", "n", "e", "kid", "alg", "use"}
			n, err := base64.RawURLEncoding.DecodeString(str("n"))
			if str("alg") != "RS256" || str("e") != "AQAB" || err != nil || len(n) != 256 || n[0] < 0x80 {
				t.Errorf("JWK %q is not an RS256 RSA 2048 key with e = 65537: %v", str("kid"), k)
			}
		case str("kty") != "EC" || str("crv") != "P-256" || str("alg") != "ES256":
			t.Errorf("JWK is neither an EC P-256 ES256 key nor an RS256 RSA key: %v", k)
		default:
			if _, err := jwkKey(str("x"), str("y")); err != nil {
				t.Errorf("JWK %q: %v", str("kid"), err)
			}
		}
		if kids[str("kid")] {
			t.Errorf("JWKS repeats kid %q", str("kid"))
		}
		kids[str("kid")] = true
		for name := range k {
			if !slices.Contains(members, name) {
				t.Errorf("JWK %q publishes member %q (a private key part?)", str("kid"), name)
			}
		}
	}
}

// metadataPathForm is the RFC 8414 §3.1 path of the runner's metadata when its {apiRoot} has a
// path, else "".
func (r *runner) metadataPathForm() string {
	u, err := url.Parse(r.cfg.APIRoot)
	if err != nil || strings.Trim(u.EscapedPath(), "/") == "" {
		return ""
	}
	return httpapi.MetadataPath + strings.TrimSuffix(u.EscapedPath(), "/")
}

// checkMetadata checks the RFC 8414 document structurally (it has no 3GPP schema): the members
// §2 requires, except token_endpoint (see httpapi.Metadata), with their JSON types.
func checkMetadata(t testing.TB, ctype string, body []byte) {
	t.Helper()
	if ctype != "application/json" {
		t.Errorf("metadata Content-Type %q", ctype)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("metadata does not parse: %v", err)
		return
	}
	for _, name := range []string{"issuer", "jwks_uri"} {
		if s, _ := m[name].(string); s == "" {
			t.Errorf("metadata member %s is not a non-empty string: %s", name, body)
		}
	}
	for _, name := range []string{"response_types_supported", "grant_types_supported", "token_endpoint_auth_methods_supported"} {
		if _, ok := m[name].([]any); !ok {
			t.Errorf("metadata member %s is not an array: %s", name, body)
		}
	}
}

// jwkKey builds the crypto/ecdsa public key of a P-256 JWK.
func jwkKey(x, y string) (*ecdsa.PublicKey, error) {
	xb, err1 := base64.RawURLEncoding.DecodeString(x)
	yb, err2 := base64.RawURLEncoding.DecodeString(y)
	if err1 != nil || err2 != nil || len(xb) != 32 || len(yb) != 32 {
		return nil, fmt.Errorf("x/y are not 32-byte base64url coordinates")
	}
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, xb...), yb...))
}

// --- requests -------------------------------------------------------------------------------

// response is a received answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// try sends a request; it fails only on a transport error, which it returns.
func (c *client) try(method, path, contentType string, body []byte, header ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.r.url+path, rd)
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

func (c *client) send(method, path, contentType string, body []byte, header ...string) response {
	c.t.Helper()
	resp, err := c.try(method, path, contentType, body, header...)
	if err != nil {
		c.t.Fatalf("%s %s as %q: %v", method, path, c.id, err)
	}
	return resp
}

func (c *client) sendJSON(method, path string, v any) response {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.send(method, path, "application/json", b)
}

// tokenReq posts a form to the token endpoint of securityID.
func (c *client) tokenReq(securityID string, form url.Values) response {
	c.t.Helper()
	c.r.secret(form.Get("client_secret"), "client_secret")
	return c.send(http.MethodPost, tokenPath(securityID), "application/x-www-form-urlencoded", []byte(form.Encode()))
}

func invPath(id string) string { return httpapi.Base + "/trustedInvokers/" + url.PathEscape(id) }
func tokenPath(id string) string {
	return httpapi.Base + "/securities/" + url.PathEscape(id) + "/token"
}

// Operations as the owner or an AEF.

func (c *client) create(id string, ss capif.ServiceSecurity) response {
	c.t.Helper()
	return c.sendJSON(http.MethodPut, invPath(id), ss)
}

func (c *client) update(id string, ss capif.ServiceSecurity) response {
	c.t.Helper()
	return c.sendJSON(http.MethodPost, invPath(id)+"/update", ss)
}

func (c *client) get(id, query string) response {
	c.t.Helper()
	p := invPath(id)
	if query != "" {
		p += "?" + query
	}
	return c.send(http.MethodGet, p, "", nil)
}

func (c *client) revokeAll(id string) response {
	c.t.Helper()
	return c.send(http.MethodDelete, invPath(id), "", nil)
}

func (c *client) revoke(id string, n capif.SecurityNotification) response {
	c.t.Helper()
	return c.sendJSON(http.MethodPost, invPath(id)+"/delete", n)
}

// --- assertions -----------------------------------------------------------------------------

func wantStatus(t testing.TB, resp response, status int) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d, want %d; body: %.2000s", resp.status, status, resp.body)
	}
}

func decode[T any](t testing.TB, resp response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(resp.body, &v); err != nil {
		t.Fatalf("decoding %T: %v; body: %.2000s", v, err, resp.body)
	}
	return v
}

// wantProblem checks the status and returns the ProblemDetails.
func wantProblem(t testing.TB, resp response, status int) capif.ProblemDetails {
	t.Helper()
	wantStatus(t, resp, status)
	return decode[capif.ProblemDetails](t, resp)
}

// wantInvalid checks a 400 naming the JSON pointer param among its invalidParams.
func wantInvalid(t testing.TB, resp response, param string) capif.ProblemDetails {
	t.Helper()
	pd := wantProblem(t, resp, http.StatusBadRequest)
	if !slices.ContainsFunc(pd.InvalidParams, func(p capif.InvalidParam) bool { return p.Param == param }) {
		t.Fatalf("invalidParams %+v lack %q", pd.InvalidParams, param)
	}
	return pd
}

// wantTokenErr checks an AccessTokenErr answer.
func wantTokenErr(t testing.TB, resp response, status int, code string) capif.AccessTokenErr {
	t.Helper()
	wantStatus(t, resp, status)
	e := decode[capif.AccessTokenErr](t, resp)
	if e.Error != code {
		t.Fatalf("error %q (%s), want %q", e.Error, e.ErrorDescription, code)
	}
	return e
}

// --- tokens ---------------------------------------------------------------------------------

// jwks fetches the runner's JWKS without a client certificate (it is public).
func (r *runner) jwks(t testing.TB) []map[string]any {
	t.Helper()
	resp := r.anonymous(t).send(http.MethodGet, "/.well-known/jwks.json", "", nil)
	wantStatus(t, resp, http.StatusOK)
	return decode[struct {
		Keys []map[string]any `json:"keys"`
	}](t, resp).Keys
}

// verifyToken verifies an access token with golang-jwt using only the runner's JWKS (kid
// lookup, ES256, crypto/ecdsa) and returns its claims.
func (r *runner) verifyToken(t testing.TB, keys []map[string]any, token string) jwt.MapClaims {
	t.Helper()
	parsed, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		for _, k := range keys {
			if k["kid"] == kid && kid != "" {
				x, _ := k["x"].(string)
				y, _ := k["y"].(string)
				return jwkKey(x, y)
			}
		}
		return nil, fmt.Errorf("no JWK with kid %q", kid)
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(r.cfg.Issuer), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		t.Fatalf("token does not verify with the JWKS: %v", err)
	}
	return parsed.Claims.(jwt.MapClaims)
}

// --- the test registry ----------------------------------------------------------------------

// Registry ids. The API catalogue is built so each method-selection rule has a witness:
//
//	aef-a  api-a1 "alpha-one"   profile [PSK], interface a1.example.com:8443/a1 with [OAUTH PKI]
//	       api-a2 "alpha-two"   profile [PSK OAUTH], interface a2.example.com:443 without methods
//	       api-a3 "alpha-three" no methods, domainName only
//	aef-b  api-b1 "beta-one"    no methods, interface 203.0.113.5:80
//	       api-b2 "beta-two"    interface [2001:db8::5]:443 with [OAUTH PSK]
//	aef-c  api-c1 "gamma-one"   profile [OAUTH]
//	aef-bulk api-bulk-NN "bulk-NN" ×40, no methods (large contexts)
//	aef-idle  publishes nothing
//	aef-sdk api-sdk-monitoring "monitoring-event" [OAUTH PKI], api-sdk-qos "qos-session"
//	       [PSK PKI OAUTH] (as examples/registry.json's aef-1), api-sdk-psk "psk-only" [PSK],
//	       api-sdk-pki "pki-only" [PKI]: the field clients' replays (clients_test.go)
const (
	aefA, aefB, aefC, aefBulk, aefIdle = "aef-a", "aef-b", "aef-c", "aef-bulk", "aef-idle"
	aefSDK                             = "aef-sdk"
	apiA1, apiA2, apiA3, apiB1, apiB2  = "api-a1", "api-a2", "api-a3", "api-b1", "api-b2"
	apiC1                              = "api-c1"
	plainInvokers, secretInvokers      = 120, 12
	escapedInvoker                     = "inv/with%percent-and/slash"
	bulkAPIs                           = 40
)

var (
	ifaceA1 = capif.InterfaceDescription{Fqdn: "a1.example.com", Port: ptr(8443), APIPrefix: "/a1"}
	ifaceA2 = capif.InterfaceDescription{Fqdn: "a2.example.com", Port: ptr(443)}
	ifaceB1 = capif.InterfaceDescription{Ipv4Addr: "203.0.113.5", Port: ptr(80)}
	ifaceB2 = capif.InterfaceDescription{Ipv6Addr: "2001:db8::5", Port: ptr(443)}
)

func ptr[T any](v T) *T { return &v }

func withMethods(d capif.InterfaceDescription, ms ...string) capif.InterfaceDescription {
	d.SecurityMethods = ms
	return d
}

// onboardingSecret of the secret invoker i: random per process, so a leak cannot be a coincidence.
var secretSalt = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

func onboardingSecret(i int) string { return fmt.Sprintf("onboarding-%02d-%s", i, secretSalt) }

func testRegistry() security.RegistryDoc {
	doc := security.RegistryDoc{
		AEFs: []security.AEFRecord{{AefID: aefA}, {AefID: aefB}, {AefID: aefC}, {AefID: aefBulk}, {AefID: aefIdle}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIName: "alpha-one", APIID: apiA1, AefProfiles: []capif.AefProfile{{AefID: aefA, SecurityMethods: []string{"PSK"}, InterfaceDescriptions: []capif.InterfaceDescription{withMethods(ifaceA1, "OAUTH", "PKI")}}}},
			{APIName: "alpha-two", APIID: apiA2, AefProfiles: []capif.AefProfile{{AefID: aefA, SecurityMethods: []string{"PSK", "OAUTH"}, InterfaceDescriptions: []capif.InterfaceDescription{ifaceA2}}}},
			{APIName: "alpha-three", APIID: apiA3, AefProfiles: []capif.AefProfile{{AefID: aefA, DomainName: "a3.example.com"}}},
			{APIName: "beta-one", APIID: apiB1, AefProfiles: []capif.AefProfile{{AefID: aefB, InterfaceDescriptions: []capif.InterfaceDescription{ifaceB1}}}},
			{APIName: "beta-two", APIID: apiB2, AefProfiles: []capif.AefProfile{{AefID: aefB, InterfaceDescriptions: []capif.InterfaceDescription{withMethods(ifaceB2, "OAUTH", "PSK")}}}},
			{APIName: "gamma-one", APIID: apiC1, AefProfiles: []capif.AefProfile{{AefID: aefC, SecurityMethods: []string{"OAUTH"}, DomainName: "c1.example.com"}}},
		},
		APIInvokers: []security.InvokerRecord{{APIInvokerID: escapedInvoker}},
	}
	doc.AEFs = append(doc.AEFs, security.AEFRecord{AefID: aefSDK})
	for _, api := range []struct {
		id, name string
		methods  []string
	}{
		{"api-sdk-monitoring", "monitoring-event", []string{"OAUTH", "PKI"}},
		{"api-sdk-qos", "qos-session", []string{"PSK", "PKI", "OAUTH"}},
		{"api-sdk-psk", "psk-only", []string{"PSK"}},
		{"api-sdk-pki", "pki-only", []string{"PKI"}},
	} {
		doc.ServiceAPIs = append(doc.ServiceAPIs, capif.ServiceAPIDescription{APIName: api.name, APIID: api.id,
			AefProfiles: []capif.AefProfile{{AefID: aefSDK, SecurityMethods: api.methods, DomainName: "sdk.example.com"}}})
	}
	for i := range bulkAPIs {
		doc.ServiceAPIs = append(doc.ServiceAPIs, capif.ServiceAPIDescription{
			APIName: fmt.Sprintf("bulk-%02d", i), APIID: fmt.Sprintf("api-bulk-%02d", i),
			AefProfiles: []capif.AefProfile{{AefID: aefBulk, DomainName: "bulk.example.com"}},
		})
	}
	for i := range plainInvokers {
		doc.APIInvokers = append(doc.APIInvokers, security.InvokerRecord{APIInvokerID: fmt.Sprintf("inv-%03d", i)})
	}
	for i := range secretInvokers {
		doc.APIInvokers = append(doc.APIInvokers, security.InvokerRecord{APIInvokerID: fmt.Sprintf("sinv-%02d", i), OnboardingSecret: onboardingSecret(i)})
	}
	return doc
}

// freshInvoker hands out an invoker id no other test of this runner uses.
func (r *runner) freshInvoker(t testing.TB) string {
	t.Helper()
	i := r.nextPlain.Add(1) - 1
	if i >= plainInvokers {
		t.Fatalf("the test registry has only %d plain invokers; raise plainInvokers", plainInvokers)
	}
	return fmt.Sprintf("inv-%03d", i)
}

// freshSecretInvoker hands out an unused invoker registered with an onboarding secret.
func (r *runner) freshSecretInvoker(t testing.TB) (id, secret string) {
	t.Helper()
	i := r.nextSecret.Add(1) - 1
	if i >= secretInvokers {
		t.Fatalf("the test registry has only %d secret invokers; raise secretInvokers", secretInvokers)
	}
	return fmt.Sprintf("sinv-%02d", i), onboardingSecret(int(i))
}

// --- notification sinks ---------------------------------------------------------------------

// notice is one notification a sink received.
type notice struct {
	path string
	body []byte
}

// sink is a local listener used as notificationDestination.
type sink struct {
	srv *httptest.Server
	got chan notice
}

// newSink answers every notification with status after recording it.
func newSink(t testing.TB, status int) *sink {
	s := &sink{got: make(chan notice, 64)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.got <- notice{path: r.URL.Path, body: b}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) url(p string) string { return s.srv.URL + p }

// arrived returns a notification that has already arrived; it never waits.
func (s *sink) arrived(t testing.TB) notice {
	t.Helper()
	select {
	case n := <-s.got:
		return n
	default:
		t.Fatal("no notification had arrived when the response came back")
		return notice{}
	}
}

// quiet checks that no further notification arrived.
func (s *sink) quiet(t testing.TB) {
	t.Helper()
	select {
	case n := <-s.got:
		t.Fatalf("unexpected notification: %s", n.body)
	default:
	}
}

// --- request bodies -------------------------------------------------------------------------

func aefEntry(aef, api string, methods ...string) capif.SecurityInformation {
	return capif.SecurityInformation{AefID: aef, APIID: api, PrefSecurityMethods: methods}
}

func ifaceEntry(d capif.InterfaceDescription, api string, methods ...string) capif.SecurityInformation {
	return capif.SecurityInformation{InterfaceDetails: &d, APIID: api, PrefSecurityMethods: methods}
}

func serviceSecurity(dest string, entries ...capif.SecurityInformation) capif.ServiceSecurity {
	return capif.ServiceSecurity{NotificationDestination: dest, SecurityInfo: entries}
}

const someDest = "https://invoker.example.com/notifications"
