package aefauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
)

const apiID = "api-mon"

// post is a POST of body to the AEF_Security_API resource at path over a connection that
// presented (and had verified) cert.
func post(path, body string, cert *devpki.Issued, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://aef.test"+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert.TLS.Leaf}
		r.TLS.VerifiedChains = [][]*x509.Certificate{{cert.TLS.Leaf}}
	}
	return r
}

func revokeBody(invoker string, apiIDs ...string) string {
	b, _ := json.Marshal(capif.RevokeAuthorizationReq{SupportedFeatures: "0",
		RevokeInfo: capif.SecurityNotification{APIInvokerID: invoker, AefID: aefID, APIIDs: apiIDs, Cause: capif.UnexpectedReason}})
	return string(b)
}

// aefSpec holds the bundled AEF_Security_API schemas of Rel-18 and Rel-19.
type aefSpec []*openapi3.T

func loadAEFSpec(t *testing.T) aefSpec {
	t.Helper()
	dir := testenv.SpecDir(t)
	var out aefSpec
	for _, p := range []string{filepath.Join(dir, "bundled", "AEF_Security_API.bundled.yaml"), filepath.Join(dir, "rel19", "bundled", "AEF_Security_API.bundled.yaml")} {
		doc, err := openapi3.NewLoader().LoadFromFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, doc)
	}
	return out
}

// check validates a JSON document against the named schema of both releases.
func (s aefSpec) check(t *testing.T, schema string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s is not JSON: %s", schema, body)
	}
	for _, doc := range s {
		if err := doc.Components.Schemas[schema].Value.VisitJSON(v); err != nil {
			t.Errorf("%s %s does not match: %v", schema, body, err)
		}
	}
}

// securityEnv is an AEF with a deny list and the CCF's certificate from the test CA.
type securityEnv struct {
	*ccf
	v       *aefauth.Verifier
	list    aefauth.DenyList
	ccfCert *devpki.Issued
	spec    aefSpec
}

func newSecurityEnv(t *testing.T, list aefauth.DenyList, mutate ...func(*aefauth.Config)) *securityEnv {
	t.Helper()
	c := newCCF(t)
	ccfCert, err := c.ca.Client("ccf", 72*time.Hour) // the tests move the clock by a day
	if err != nil {
		t.Fatal(err)
	}
	e := &securityEnv{ccf: c, list: list, ccfCert: ccfCert, spec: loadAEFSpec(t)}
	e.v = c.verifier(t, func(cfg *aefauth.Config) {
		cfg.DenyList, cfg.APIs, cfg.CCFRoots = list, map[string]string{apiName: apiID, "qos-session": "api-qos"}, c.ca.Pool()
		for _, m := range mutate {
			m(cfg)
		}
	})
	return e
}

// push sends the CCF's RevokeAuthorizationReq and checks the 200 answer against the YAMLs.
func (e *securityEnv) push(t *testing.T, invoker, pushID string, apiIDs ...string) {
	t.Helper()
	body := revokeBody(invoker, apiIDs...)
	e.spec.check(t, "RevokeAuthorizationReq", []byte(body))
	w := httptest.NewRecorder()
	e.v.SecurityAPI().ServeHTTP(w, post(aefauth.RevokeAuthorizationPath, body, e.ccfCert, "webhook-id", pushID))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("push answered %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	e.spec.check(t, "RevokeAuthorizationRsp", w.Body.Bytes())
}

// verify is the monitoring-event check of a token issued at iat (exp 10 min later) for invoker A.
func (e *securityEnv) verify(t *testing.T, iat time.Time) error {
	t.Helper()
	cl := e.claims()
	cl.IssuedAt, cl.Expiry = iat.Unix(), iat.Add(10*time.Minute).Unix()
	_, err := e.v.For(apiName).Verify(t.Context(), request(e.token(t, cl), e.invokerA))
	return err
}

func revokedErr(err error) bool {
	var e *aefauth.Error
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized && e.Code == aefauth.CodeInvalidToken && e.Description == "revoked"
}

// TestRevokedTokensAndClocks: the rule iat ≤ arrival + Leeway, on a fake clock, with the CCF's
// clock ahead; the entry's retention; exp − iat above MaxTokenLifetime.
func TestRevokedTokensAndClocks(t *testing.T) {
	e := newSecurityEnv(t, aefauth.NewMemoryList())
	arrival := e.clock.Now()
	before := arrival.Add(-time.Minute)
	if err := e.verify(t, before); err != nil {
		t.Fatal(err)
	}
	e.push(t, "invoker-1", "n1", apiID)
	for _, tt := range []struct {
		name string
		iat  time.Time
		want bool // refused as revoked
	}{
		{"issued before the push", before, true},
		{"issued 1 s before by a CCF clock 2 s ahead", arrival.Add(time.Second), true},
		{"issued 1 s before by a CCF clock 29 s ahead", arrival.Add(28 * time.Second), true},
		{"issued 10 s after the push arrived", arrival.Add(10 * time.Second), true},
		{"issued after a new grant, past the window", arrival.Add(aefauth.Leeway + time.Second), false},
	} {
		e.clock.t = arrival.Add(time.Second) // tokens must not be issued in the future
		if tt.iat.After(e.clock.Now()) {
			e.clock.t = tt.iat
		}
		if err := e.verify(t, tt.iat); revokedErr(err) != tt.want {
			t.Errorf("%s: %v, want revoked %v", tt.name, err, tt.want)
		}
	}
	// Another API of the invoker, and another invoker, are not affected.
	e.clock.t = arrival.Add(time.Second)
	cl := e.claims()
	cl.IssuedAt, cl.Expiry, cl.Scope = before.Unix(), before.Add(10*time.Minute).Unix(), "3gpp#"+aefID+":"+apiName+",qos-session"
	if _, err := e.v.For("qos-session").Verify(t.Context(), request(e.token(t, cl), e.invokerA)); err != nil {
		t.Errorf("another API: %v", err)
	}
	// The entry is kept while a token it covers can be valid: MaxTokenLifetime + 2×Leeway.
	e.clock.t = arrival.Add(aefauth.DefaultMaxTokenLifetime + 2*aefauth.Leeway - time.Second)
	if err := e.verify(t, arrival.Add(-time.Second)); !revokedErr(err) && err != nil && !strings.Contains(err.Error(), "expired") {
		t.Errorf("within retention: %v", err)
	}
	e.clock.t = arrival.Add(aefauth.DefaultMaxTokenLifetime + 2*aefauth.Leeway + time.Second)
	if at, ok, _ := e.list.RevokedAt(t.Context(), "invoker-1", apiID); !ok || !at.Equal(arrival) {
		t.Errorf("the list lost the entry early: %v %v", at, ok)
	}
	// exp − iat above MaxTokenLifetime: refused, with or without a list.
	for _, v := range []*aefauth.Verifier{e.v, e.ccf.verifier(t, nil)} {
		cl := e.claims()
		cl.Expiry = cl.IssuedAt + int64((aefauth.DefaultMaxTokenLifetime + time.Second).Seconds())
		_, err := v.For(apiName).Verify(t.Context(), request(e.token(t, cl), e.invokerA))
		if err == nil || !strings.Contains(err.Error(), "lives longer") {
			t.Errorf("a token living longer than MaxTokenLifetime: %v", err)
		}
	}
}

// TestRevokeAuthorizationCallers: who may push, and what the others get.
func TestRevokeAuthorizationCallers(t *testing.T) {
	otherCA, err := devpki.NewCA("the invokers' CA")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := otherCA.Client("ccf", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := newSecurityEnv(t, aefauth.NewMemoryList())
	twin, err := e.ca.Client("ccf", time.Hour) // the CCF's name, another key, from the CCF's CA
	if err != nil {
		t.Fatal(err)
	}
	pinned := newSecurityEnv(t, aefauth.NewMemoryList())
	pinned.v = pinned.ccf.verifier(t, func(cfg *aefauth.Config) {
		cfg.DenyList, cfg.APIs, cfg.CCFRoots = pinned.list, map[string]string{apiName: apiID}, pinned.ca.Pool()
		cfg.CCFPins = []string{aefauth.SPKIPin(pinned.ccfCert.TLS.Leaf)}
	})
	pinnedTwin, err := pinned.ca.Client("ccf", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	noRoots := newSecurityEnv(t, aefauth.NewMemoryList(), func(cfg *aefauth.Config) { cfg.CCFRoots = nil })
	for _, tt := range []struct {
		name   string
		env    *securityEnv
		cert   *devpki.Issued
		status int
	}{
		{"no certificate", e, nil, http.StatusUnauthorized},
		{"a certificate named ccf from another CA", e, forged, http.StatusForbidden},
		{"an invoker's certificate", e, e.invokerA, http.StatusForbidden},
		{"the AEF's own certificate", e, e.aef, http.StatusForbidden},
		{"the CCF", e, e.ccfCert, http.StatusOK},
		{"the CCF, pinned", pinned, pinned.ccfCert, http.StatusOK},
		{"the CCF's name and CA, but not the pinned key", pinned, pinnedTwin, http.StatusForbidden},
		{"the CCF's name from the invokers' CA, pins set", pinned, forged, http.StatusForbidden},
		{"the CCF's name and CA, no pins: accepted", e, twin, http.StatusOK},
		{"no CCFRoots configured", noRoots, noRoots.ccfCert, http.StatusForbidden},
	} {
		invoker := "invoker-of-" + tt.name // one per case: each list starts clean for it
		w := httptest.NewRecorder()
		tt.env.v.SecurityAPI().ServeHTTP(w, post(aefauth.RevokeAuthorizationPath, revokeBody(invoker, apiID), tt.cert))
		if w.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, w.Code, w.Body, tt.status)
		}
		_, revoked, _ := tt.env.list.RevokedAt(t.Context(), invoker, apiID)
		if revoked != (tt.status == http.StatusOK) {
			t.Errorf("%s: recorded %v", tt.name, revoked)
		}
		if tt.status != http.StatusOK && w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: refused with %s", tt.name, w.Header().Get("Content-Type"))
		}
	}
}

// TestSecurityAPIBodies: every malformed request is refused with its status, nothing recorded.
func TestSecurityAPIBodies(t *testing.T) {
	e := newSecurityEnv(t, aefauth.NewMemoryList())
	good := revokeBody("invoker-1", apiID)
	chunked := post(aefauth.RevokeAuthorizationPath, good, e.ccfCert)
	chunked.ContentLength = -1
	get := post(aefauth.RevokeAuthorizationPath, good, e.ccfCert)
	get.Method = http.MethodGet
	for _, tt := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"GET", get, http.StatusMethodNotAllowed},
		{"text/plain", post(aefauth.RevokeAuthorizationPath, good, e.ccfCert, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType},
		{"no Content-Length", chunked, http.StatusLengthRequired},
		{"too large", post(aefauth.RevokeAuthorizationPath, `{"revokeInfo":{"apiInvokerId":"`+strings.Repeat("x", 70<<10)+`"}}`, e.ccfCert), http.StatusRequestEntityTooLarge},
		{"a bare SecurityNotification (an old CCF)", post(aefauth.RevokeAuthorizationPath, `{"apiInvokerId":"invoker-1","apiIds":["api-mon"],"cause":"UNEXPECTED_REASON"}`, e.ccfCert), http.StatusBadRequest},
		{"no supportedFeatures", post(aefauth.RevokeAuthorizationPath, `{"revokeInfo":{"apiInvokerId":"invoker-1","apiIds":["a"],"cause":"X"}}`, e.ccfCert), http.StatusBadRequest},
		{"supportedFeatures not hex", post(aefauth.RevokeAuthorizationPath, strings.Replace(good, `"supportedFeatures":"0"`, `"supportedFeatures":"xyz"`, 1), e.ccfCert), http.StatusBadRequest},
		{"no apiIds", post(aefauth.RevokeAuthorizationPath, revokeBody("invoker-1"), e.ccfCert), http.StatusBadRequest},
		{"an empty apiId", post(aefauth.RevokeAuthorizationPath, revokeBody("invoker-1", ""), e.ccfCert), http.StatusBadRequest},
		{"no cause", post(aefauth.RevokeAuthorizationPath, strings.Replace(good, `"cause":"UNEXPECTED_REASON"`, `"cause":""`, 1), e.ccfCert), http.StatusBadRequest},
		{"another AEF's", post(aefauth.RevokeAuthorizationPath, strings.Replace(good, aefID, "aef-9", 1), e.ccfCert), http.StatusBadRequest},
		{"malformed", post(aefauth.RevokeAuthorizationPath, `{"revokeInfo":`, e.ccfCert), http.StatusBadRequest},
		{"trailing data", post(aefauth.RevokeAuthorizationPath, good+"{}", e.ccfCert), http.StatusBadRequest},
		{"array", post(aefauth.RevokeAuthorizationPath, `[]`, e.ccfCert), http.StatusBadRequest},
		{"another resource", post(capif.AEFSecurityAPIPath+"/nothing", good, e.ccfCert), http.StatusNotFound},
	} {
		w := httptest.NewRecorder()
		e.v.SecurityAPI().ServeHTTP(w, tt.req)
		if w.Code != tt.status || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s, want %d problem+json", tt.name, w.Code, w.Header().Get("Content-Type"), w.Body, tt.status)
		}
	}
	if _, ok, _ := e.list.RevokedAt(t.Context(), "invoker-1", apiID); ok {
		t.Error("a refused push was recorded")
	}
}

// TestCheckAuthentication: the invoker's own call; it changes nothing.
func TestCheckAuthentication(t *testing.T) {
	e := newSecurityEnv(t, aefauth.NewMemoryList())
	body := `{"apiInvokerId":"invoker-1","supportedFeatures":"0"}`
	e.spec.check(t, "CheckAuthenticationReq", []byte(body))
	for _, tt := range []struct {
		name   string
		cert   *devpki.Issued
		body   string
		status int
	}{
		{"no certificate", nil, body, http.StatusUnauthorized},
		{"the invoker itself", e.invokerA, body, http.StatusOK},
		{"another invoker", e.invokerB, body, http.StatusForbidden},
		{"no supportedFeatures", e.invokerA, `{"apiInvokerId":"invoker-1"}`, http.StatusBadRequest},
	} {
		w := httptest.NewRecorder()
		e.v.SecurityAPI().ServeHTTP(w, post(aefauth.CheckAuthenticationPath, tt.body, tt.cert))
		if w.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, w.Code, w.Body, tt.status)
		}
		if w.Code == http.StatusOK {
			e.spec.check(t, "CheckAuthenticationRsp", w.Body.Bytes())
		}
	}
}

// TestUnknownAPIRevokesAll: a push naming only an apiId Config.APIs does not hold revokes the
// invoker's tokens for every API here; a later grant past the window works again.
func TestUnknownAPIRevokesAll(t *testing.T) {
	e := newSecurityEnv(t, aefauth.NewMemoryList())
	arrival := e.clock.Now()
	before := arrival.Add(-time.Minute)
	e.push(t, "invoker-1", "n1", "api-renamed")
	e.clock.t = arrival.Add(time.Second)
	if err := e.verify(t, before); !revokedErr(err) {
		t.Errorf("monitoring-event: %v, want revoked", err)
	}
	cl := e.claims()
	cl.IssuedAt, cl.Expiry, cl.Scope = before.Unix(), before.Add(10*time.Minute).Unix(), "3gpp#"+aefID+":"+apiName+",qos-session"
	if _, err := e.v.For("qos-session").Verify(t.Context(), request(e.token(t, cl), e.invokerA)); !revokedErr(err) {
		t.Errorf("qos-session: %v, want revoked", err)
	}
	e.clock.t = arrival.Add(aefauth.Leeway + 2*time.Second)
	if err := e.verify(t, arrival.Add(aefauth.Leeway+time.Second)); err != nil {
		t.Errorf("a token issued past the window: %v", err)
	}
}

// TestDenyListPushes: a repeated push changes nothing; an apiId the AEF does not serve revokes
// all the invoker's APIs here, with a WARN; the later of two times is kept.
func TestDenyListPushes(t *testing.T) {
	var logs strings.Builder
	e := newSecurityEnv(t, aefauth.NewMemoryList(), func(cfg *aefauth.Config) { cfg.Logger = slogTo(&logs) })
	first := e.clock.Now()
	e.push(t, "invoker-1", "n1", apiID)
	if logs.Len() != 0 {
		t.Errorf("a WARN for a known apiId: %q", logs.String())
	}
	if _, ok, _ := e.list.RevokedAt(t.Context(), "invoker-1", aefauth.AllAPIs); ok {
		t.Error("a push of a known apiId revoked all APIs")
	}
	e.push(t, "invoker-7", "n0", "api-elsewhere")
	if !strings.Contains(logs.String(), "api-elsewhere") {
		t.Errorf("no WARN for an apiId this AEF does not serve: %q", logs.String())
	}
	for _, id := range []string{"api-elsewhere", aefauth.AllAPIs} {
		if _, ok, _ := e.list.RevokedAt(t.Context(), "invoker-7", id); !ok {
			t.Errorf("no entry for %s", id)
		}
	}
	e.clock.Add(time.Minute)
	e.push(t, "invoker-1", "n1", apiID) // the same push again
	if at, _, _ := e.list.RevokedAt(t.Context(), "invoker-1", apiID); !at.Equal(first) {
		t.Errorf("a repeated push moved the entry to %v", at)
	}
	e.push(t, "invoker-1", "n2", apiID)
	if at, _, _ := e.list.RevokedAt(t.Context(), "invoker-1", apiID); !at.Equal(first.Add(time.Minute)) {
		t.Errorf("a later push: entry at %v", at)
	}
	// Entries are forgotten once MaxTokenLifetime + 2×Leeway have passed (by the next push).
	e.clock.Add(aefauth.DefaultMaxTokenLifetime + 2*aefauth.Leeway + time.Second)
	e.push(t, "invoker-9", "n3", apiID)
	if _, ok, _ := e.list.RevokedAt(t.Context(), "invoker-1", apiID); ok {
		t.Error("an entry outlived MaxTokenLifetime + 2×Leeway")
	}
	// For panics at set-up for an API Config.APIs does not name.
	defer func() {
		if recover() == nil {
			t.Error("For of an API without an apiId did not panic")
		}
	}()
	e.v.For("unnamed-api")
}

// TestFileList: revocations survive a restart; a list that cannot write answers 500 and keeps
// nothing, so the CCF retries.
func TestFileList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deny.jsonl")
	l, err := aefauth.OpenFileList(path)
	if err != nil {
		t.Fatal(err)
	}
	e := newSecurityEnv(t, l)
	e.clock.t = time.Now().Truncate(time.Second) // the file list forgets by the wall clock on open
	at := e.clock.Now()
	e.push(t, "invoker-1", "n1", apiID)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the list file: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := aefauth.OpenFileList(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got, ok, _ := l2.RevokedAt(t.Context(), "invoker-1", apiID); !ok || !got.Equal(at) {
		t.Fatalf("after a restart: %v %v, want %v", got, ok, at)
	}
	// The repeat of a push recorded before the restart changes nothing.
	if err := l2.Record(t.Context(), aefauth.Revocation{PushID: "n1", APIInvokerID: "invoker-1", APIIDs: []string{apiID}, At: at.Add(time.Minute), Until: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := l2.RevokedAt(t.Context(), "invoker-1", apiID); !got.Equal(at) {
		t.Errorf("a repeated push after the restart moved the entry to %v", got)
	}

	// A list that fails: 500, nothing kept.
	broken := newSecurityEnv(t, failingList{})
	w := httptest.NewRecorder()
	broken.v.SecurityAPI().ServeHTTP(w, post(aefauth.RevokeAuthorizationPath, revokeBody("invoker-1", apiID), broken.ccfCert))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("a failing list: %d, want 500", w.Code)
	}
}

// TestFileListDamage: a line that does not parse (a crash mid-write) is skipped, not the lines
// after it; a write cut short at the end does not swallow the next one; a line longer than any
// push fails the open rather than starting with a list cut short.
func TestFileListDamage(t *testing.T) {
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	line := func(invoker string) string {
		b, err := json.Marshal(aefauth.Revocation{APIInvokerID: invoker, APIIDs: []string{apiID}, At: until.Add(-time.Minute), Until: until})
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	path := filepath.Join(t.TempDir(), "deny.jsonl")
	if err := os.WriteFile(path, []byte(line("inv-a")+"{\"apiInvokerId\":\"inv-x\",\"api\n"+line("inv-b")+`{"apiInvokerId":"inv-c","apiI`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := aefauth.OpenFileList(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(t.Context(), aefauth.Revocation{PushID: "p1", APIInvokerID: "inv-d", APIIDs: []string{apiID}, At: until.Add(-time.Minute), Until: until}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = aefauth.OpenFileList(path); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, inv := range []string{"inv-a", "inv-b", "inv-d"} {
		if _, ok, _ := l.RevokedAt(t.Context(), inv, apiID); !ok {
			t.Errorf("%s was lost", inv)
		}
	}
	long := filepath.Join(t.TempDir(), "deny.jsonl")
	if err := os.WriteFile(long, []byte(line("inv-a")+strings.Repeat("x", 1<<20)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := aefauth.OpenFileList(long); err == nil {
		t.Error("a 1 MiB line was accepted")
	}
}

type failingList struct{}

func (failingList) Record(context.Context, aefauth.Revocation) error { return errors.New("disk full") }
func (failingList) RevokedAt(context.Context, string, string) (time.Time, bool, error) {
	return time.Time{}, false, nil
}

func slogTo(b *strings.Builder) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
