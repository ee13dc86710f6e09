package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// countingStore counts the store reads a request makes.
type countingStore struct {
	security.Store
	loads atomic.Int32
}

func (c *countingStore) Load(ctx context.Context, q security.Query) (*security.Snapshot, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, q)
}

// panicBody fails the test if a handler reads the body.
type panicBody struct{ t *testing.T }

func (panicBody) Close() error { return nil }

func (p panicBody) Read([]byte) (int, error) {
	p.t.Error("the body of a request without a client certificate was read")
	return 0, errors.New("must not be read")
}

// A request that presents no client certificate is answered 401 before its body is read and
// without any store read, on every route; the answer says that no certificate came.
func TestNoCertificateIsRefusedBeforeTheBody(t *testing.T) {
	s := newServer(t, nil)
	counter := &countingStore{Store: s.store}
	s.h = All(security.New(counter, s.db, s.signer, s.notifier, nil, security.Config{Issuer: "ccf", APIRoot: apiRoot}), s.opts)
	for _, rt := range []struct{ method, target, ct string }{
		{http.MethodPut, invokers + "inv1", "application/json"},
		{http.MethodPost, invokers + "inv1/update", "application/json"},
		{http.MethodPost, invokers + "inv1/delete", "application/json"},
		{http.MethodDelete, invokers + "inv1", ""},
		{http.MethodGet, invokers + "inv1?authenticationInfo=nonsense", ""},
		{http.MethodPost, Base + "/securities/inv1/token", "application/x-www-form-urlencoded"},
	} {
		r := s.req(rt.method, rt.target, "", rt.ct, "")
		r.Body = panicBody{t}
		w := s.serve(r)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "no client certificate was presented") {
			t.Errorf("%s %s: %d %s", rt.method, rt.target, w.Code, w.Body)
		}
	}
	if n := counter.loads.Load(); n != 0 {
		t.Errorf("%d store reads for requests without a certificate", n)
	}
}

// The malformed-request classes: each answered with its status and cause, as the right error
// type, and none changes what is stored.
func TestMalformedRequestClasses(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	token := Base + "/securities/inv1/token"
	deep := `{"securityInfo":` + strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1) + `}`
	wide := `{"securityInfo":[` + strings.Repeat("{},", MaxJSONElements) + `{}]}`
	form := "application/x-www-form-urlencoded"
	grant := "grant_type=client_credentials&client_id=inv1&client_secret=" + inv1Secret
	tests := []struct {
		name               string
		method, target, ct string
		body               string
		header             http.Header
		caller             string
		status             int
		cause              string // ProblemDetails cause, or the OAuth error on the token route
		allow              string
		params             []string
	}{
		{name: "duplicate member", method: "PUT", target: invokers + "inv2", ct: "application/json", body: `{"notificationDestination":"https://a.example.com","notificationDestination":"https://b.example.com","securityInfo":[]}`, caller: "inv2", status: 400, cause: CauseMalformedBody},
		{name: "duplicate member in other case", method: "POST", target: invokers + "inv1/update", ct: "application/json", body: `{"securityInfo":[],"SecurityInfo":[]}`, caller: "inv1", status: 400, cause: CauseMalformedBody},
		{name: "invalid UTF-8", method: "POST", target: invokers + "inv1/update", ct: "application/json", body: "{\"notificationDestination\":\"https://\xff.example.com\",\"securityInfo\":[]}", caller: "inv1", status: 400, cause: CauseMalformedBody},
		{name: "lone surrogate escape", method: "POST", target: invokers + "inv1/update", ct: "application/json", body: `{"notificationDestination":"https://\ud800.example.com"}`, caller: "inv1", status: 400, cause: CauseMalformedBody},
		{name: "nesting beyond the bound", method: "PUT", target: invokers + "inv2", ct: "application/json", body: deep, caller: "inv2", status: 400, cause: CauseMalformedBody},
		{name: "array beyond the bound", method: "POST", target: invokers + "inv1/update", ct: "application/json", body: wide, caller: "inv1", status: 400, cause: CauseMalformedBody},
		{name: "apiIds beyond the bound", method: "POST", target: invokers + "inv1/delete", ct: "application/json", body: `{"apiInvokerId":"inv1","cause":"OVERLIMIT_USAGE","apiIds":[` + strings.Repeat(`"a",`, MaxJSONElements) + `"a"]}`, caller: "aef1", status: 400, cause: CauseMalformedBody},
		{name: "two Content-Types", method: "POST", target: invokers + "inv1/update", body: `{}`, header: http.Header{"Content-Type": {"application/json", "application/json"}}, caller: "inv1", status: 415, cause: CauseUnsupportedMedia, params: []string{"Content-Type"}},
		{name: "wrong Content-Type", method: "POST", target: invokers + "inv1/update", ct: "text/json", body: `{}`, caller: "inv1", status: 415, cause: CauseUnsupportedMedia, params: []string{"Content-Type"}},
		{name: "gzip", method: "POST", target: invokers + "inv1/update", ct: "application/json", body: `{}`, header: http.Header{"Content-Encoding": {"gzip"}}, caller: "inv1", status: 415, cause: CauseUnsupportedMedia, params: []string{"Content-Encoding"}},
		{name: "gzip on the token route", method: "POST", target: token, ct: form, body: grant, header: http.Header{"Content-Encoding": {"gzip"}}, caller: "inv1", status: 415, cause: CauseUnsupportedMedia, params: []string{"Content-Encoding"}},
		{name: "repeated form parameter", method: "POST", target: token, ct: form, body: grant + "&scope=a&scope=b", caller: "inv1", status: 400, cause: capif.InvalidRequest},
		{name: "scope over its bound", method: "POST", target: token, ct: form, body: grant + "&scope=" + url.QueryEscape("3gpp#aef1:"+strings.Repeat("x", capif.MaxScopeLength)), caller: "inv1", status: 400, cause: capif.InvalidScope},
		{name: "scope with too many APIs", method: "POST", target: token, ct: form, body: grant + "&scope=3gpp%23aef1:" + strings.Repeat("a,", 1200) + "b", caller: "inv1", status: 400, cause: capif.InvalidScope},
		{name: "id with an encoded slash", method: "GET", target: invokers + "inv%2F1", caller: "aef1", status: 404, cause: security.CauseContextNotFound},
		{name: "id with NUL", method: "GET", target: invokers + "inv%001", caller: "aef1", status: 404, cause: security.CauseContextNotFound},
		{name: "id over 2 KiB", method: "GET", target: invokers + strings.Repeat("i", 2100), caller: "aef1", status: 404, cause: security.CauseContextNotFound},
		{name: "id over 2 KiB, PUT", method: "PUT", target: invokers + strings.Repeat("i", 2100), ct: "application/json", body: `{}`, caller: "inv1", status: 403, cause: security.CauseNotOwner},
		{name: "HEAD", method: "HEAD", target: invokers + "inv1", caller: "aef1", status: 405, cause: CauseMethodNotAllowed, allow: "DELETE, GET, PUT"},
		{name: "OPTIONS", method: "OPTIONS", target: token, caller: "inv1", status: 405, cause: CauseMethodNotAllowed, allow: "POST"},
		{name: "TRACE", method: "TRACE", target: invokers + "inv1/update", caller: "inv1", status: 405, cause: CauseMethodNotAllowed, allow: "POST"},
	}
	before := s.snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.req(tt.method, tt.target, tt.caller, tt.ct, tt.body)
			for k, vs := range tt.header {
				r.Header[k] = vs
			}
			w := s.serve(r)
			if strings.HasPrefix(tt.target, token) && tt.status != 415 && tt.status != 405 {
				oauthErr(t, w, tt.status, tt.cause)
			} else if tt.method != "HEAD" {
				problem(t, w, tt.status, tt.cause, tt.params...)
			} else if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			if tt.allow != "" && w.Header().Get("Allow") != tt.allow {
				t.Errorf("Allow %q, want %q", w.Header().Get("Allow"), tt.allow)
			}
			if after := s.snapshot(); after != before {
				t.Errorf("stored state changed:\n%s\n%s", before, after)
			}
		})
	}
}

// snapshot is what is stored for the test registry's invokers, as text.
func (s *testServer) snapshot() string {
	var b bytes.Buffer
	for _, id := range []string{"inv1", "inv2"} {
		snap, err := s.db.Load(context.Background(), security.Query{APIInvokerID: id})
		if err != nil {
			s.t.Fatal(err)
		}
		_ = json.NewEncoder(&b).Encode(snap.Context)
	}
	p, _ := s.db.Pending(context.Background())
	_ = json.NewEncoder(&b).Encode(p)
	return b.String()
}

// Stock OAuth clients authenticate with HTTP Basic (RFC 6749 §2.3.1), user name and password
// form-urlencoded before base64.
func TestTokenBasicAuthentication(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	s.mustCreate("inv2")
	token := func(caller, user, pass, body string) *httpResponse {
		r := s.req(http.MethodPost, Base+"/securities/"+caller+"/token", caller, "application/x-www-form-urlencoded", body)
		if user != "" || pass != "" {
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(user)+":"+url.QueryEscape(pass))))
		}
		w := s.serve(r)
		return &httpResponse{w.Code, w.Header(), w.Body.String()}
	}
	tests := []struct {
		name, caller, user, pass, body string
		status                         int
		code                           string
		challenge                      bool
	}{
		{name: "basic with secret", caller: "inv1", user: "inv1", pass: inv1Secret, body: "grant_type=client_credentials", status: 200},
		{name: "basic without secret, none registered", caller: "inv2", user: "inv2", body: "grant_type=client_credentials", status: 200},
		{name: "basic, client_id repeated in the body", caller: "inv1", user: "inv1", pass: inv1Secret, body: "grant_type=client_credentials&client_id=inv1", status: 200},
		{name: "post", caller: "inv1", body: "grant_type=client_credentials&client_id=inv1&client_secret=" + inv1Secret, status: 200},
		{name: "basic, wrong secret", caller: "inv1", user: "inv1", pass: "nope", body: "grant_type=client_credentials", status: 401, code: capif.InvalidClient, challenge: true},
		{name: "basic, missing secret", caller: "inv1", user: "inv1", body: "grant_type=client_credentials", status: 401, code: capif.InvalidClient, challenge: true},
		{name: "basic, user not the certificate", caller: "inv1", user: "inv2", body: "grant_type=client_credentials", status: 401, code: capif.InvalidClient, challenge: true},
		{name: "basic and body client_id differ", caller: "inv1", user: "inv1", pass: inv1Secret, body: "grant_type=client_credentials&client_id=inv2", status: 400, code: capif.InvalidRequest},
		{name: "secret in header and body", caller: "inv1", user: "inv1", pass: inv1Secret, body: "grant_type=client_credentials&client_secret=" + inv1Secret, status: 400, code: capif.InvalidRequest},
		{name: "post, wrong secret: no challenge", caller: "inv1", body: "grant_type=client_credentials&client_id=inv1&client_secret=x", status: 401, code: capif.InvalidClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := token(tt.caller, tt.user, tt.pass, tt.body)
			if got.status != tt.status {
				t.Fatalf("status %d, want %d: %s", got.status, tt.status, got.body)
			}
			if tt.code != "" && !strings.Contains(got.body, `"error":"`+tt.code+`"`) {
				t.Errorf("body %s, want error %s", got.body, tt.code)
			}
			if c := got.header.Get("WWW-Authenticate"); (c == `Basic realm="`+BasicRealm+`"`) != tt.challenge {
				t.Errorf("WWW-Authenticate %q, challenge wanted: %v", c, tt.challenge)
			}
		})
	}
	// An unreadable Basic header, and no certificate with a Basic header: both challenged.
	r := s.req(http.MethodPost, Base+"/securities/inv1/token", "inv1", "application/x-www-form-urlencoded", "grant_type=client_credentials")
	r.Header.Set("Authorization", "Basic !!!")
	if w := s.serve(r); w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("unreadable Basic: %d %v", w.Code, w.Header())
	}
	r = s.req(http.MethodPost, Base+"/securities/inv1/token", "", "application/x-www-form-urlencoded", "grant_type=client_credentials")
	r.SetBasicAuth("inv1", inv1Secret)
	if w := s.serve(r); w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("no certificate, Basic: %d %v", w.Code, w.Header())
	}
}

type httpResponse struct {
	status int
	header http.Header
	body   string
}
