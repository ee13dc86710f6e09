package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

func TestCreateAndUpdate(t *testing.T) {
	s := newServer(t, nil)
	w := s.json(http.MethodPut, invokers+"inv1", "inv1", createBody())
	if w.Code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	if loc := w.Header().Get("Location"); loc != apiRoot+"/capif-security/v1/trustedInvokers/inv1" {
		t.Errorf("Location %q", loc)
	}
	if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", w.Header())
	}
	var out capif.ServiceSecurity
	decodeAs(t, w, &out)
	if len(out.SecurityInfo) != 2 || out.SecurityInfo[0].SelSecurityMethod != capif.OAUTH || out.SecurityInfo[1].SelSecurityMethod != capif.PSK || out.SecurityInfo[1].AuthenticationInfo == "" {
		t.Errorf("PUT body %s", w.Body)
	}
	psk := out.SecurityInfo[1].AuthenticationInfo

	// PUT again: 403 pointing to update.
	w = s.json(http.MethodPut, invokers+"inv1", "inv1", createBody())
	p := problem(t, w, http.StatusForbidden, security.CauseContextExists)
	if !strings.Contains(p.Detail, "/update") {
		t.Errorf("detail %q", p.Detail)
	}

	// Update: 200, no Location, PSK kept.
	w = s.json(http.MethodPost, invokers+"inv1/update", "inv1", createBody(capif.SecurityInformation{AefID: "aef2", PrefSecurityMethods: []string{capif.PSK}}))
	if w.Code != http.StatusOK || w.Header().Get("Location") != "" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("update: %d %v %s", w.Code, w.Header(), w.Body)
	}
	decodeAs(t, w, &out)
	if len(out.SecurityInfo) != 1 || out.SecurityInfo[0].AuthenticationInfo != psk {
		t.Errorf("update body %s", w.Body)
	}
	// Update of a missing context.
	problem(t, s.json(http.MethodPost, invokers+"inv2/update", "inv2", createBody()), http.StatusNotFound, security.CauseContextNotFound)
}

func TestEscapedInvokerID(t *testing.T) {
	s := newServer(t, nil)
	w := s.json(http.MethodPut, invokers+"odd%2Fid%25x", "odd/id%x", createBody())
	if w.Code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	if loc := w.Header().Get("Location"); loc != apiRoot+"/capif-security/v1/trustedInvokers/odd%2Fid%25x" {
		t.Errorf("Location %q", loc)
	}
	snap, err := s.db.Load(t.Context(), security.Query{APIInvokerID: "odd/id%x"})
	if err != nil || snap.Context == nil {
		t.Fatalf("context not stored under the unescaped id: %v", err)
	}
	w = s.do(http.MethodGet, invokers+"odd%2Fid%25x", "aef1", "", "")
	if w.Code != http.StatusOK {
		t.Errorf("GET: %d %s", w.Code, w.Body)
	}
	// Unescaped, the slash makes another path.
	problem(t, s.do(http.MethodGet, invokers+"odd/id%25x", "aef1", "", ""), http.StatusNotFound, "RESOURCE_NOT_FOUND")
}

func TestInvokerRoutesIdentityOrder(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	twoCN := func() *http.Request {
		cn := asn1.ObjectIdentifier{2, 5, 4, 3}
		c, _, _ := leaf(t, s.ca, &x509.Certificate{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "inv1"}, {Type: cn, Value: "inv2"}}}})
		r := s.req(http.MethodPost, invokers+"inv1/update", "", "application/json", `{}`)
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
		return r
	}
	tests := []struct {
		name   string
		r      *http.Request
		status int
		cause  string
		params []string
	}{
		{"no certificate", s.req(http.MethodPut, invokers+"inv1", "", "application/json", `{}`), 401, security.CauseUnauthenticated, nil},
		{"unknown CN", s.req(http.MethodPut, invokers+"inv1", "stranger", "application/json", `{}`), 401, security.CauseUnauthenticated, nil},
		{"unknown CN, wrong media type", s.req(http.MethodPut, invokers+"inv1", "stranger", "text/plain", `x`), 401, security.CauseUnauthenticated, nil},
		{"two CNs", twoCN(), 401, security.CauseUnauthenticated, nil},
		{"AEF", s.req(http.MethodPut, invokers+"inv1", "aef1", "application/json", `{}`), 403, security.CauseRoleNotAllowed, nil},
		{"AEF on an unknown id, bad body", s.req(http.MethodPost, invokers+"nobody/update", "aef1", "application/json", `{`), 403, security.CauseRoleNotAllowed, nil},
		{"another invoker", s.req(http.MethodPost, invokers+"inv1/update", "inv2", "application/json", `{}`), 403, security.CauseNotOwner, nil},
		{"invoker on an unknown id", s.req(http.MethodPut, invokers+"nobody", "inv2", "application/json", `{}`), 403, security.CauseNotOwner, nil},
		{"owner, wrong media type", s.req(http.MethodPut, invokers+"inv2", "inv2", "text/plain", `{}`), 415, CauseUnsupportedMedia, []string{"Content-Type"}},
		{"owner, malformed", s.req(http.MethodPut, invokers+"inv2", "inv2", "application/json", `{"securityInfo":`), 400, CauseMalformedBody, nil},
		{"owner, too large", s.req(http.MethodPut, invokers+"inv2", "inv2", "application/json", `{"x":"`+strings.Repeat("a", MaxBody)+`"}`), 413, security.CauseTooLarge, nil},
		{"owner, trailing data", s.req(http.MethodPut, invokers+"inv2", "inv2", "application/json", `{}]`), 400, CauseMalformedBody, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problem(t, s.serve(tt.r), tt.status, tt.cause, tt.params...)
		})
	}
}

func TestCreateValidationErrors(t *testing.T) {
	s := newServer(t, nil)
	tests := []struct {
		name     string
		body     string
		status   int
		pointers []string
	}{
		{"type mismatch", `{"notificationDestination":"https://x.example.com","securityInfo":[{"aefId":"aef1","prefSecurityMethods":["PSK"]},{"aefId":"aef2","prefSecurityMethods":"PSK"}]}`, 400, []string{"/securityInfo/1/prefSecurityMethods"}},
		{"schema", `{"notificationDestination":"ftp://x","securityInfo":[{"prefSecurityMethods":[]}]}`, 400, []string{"/notificationDestination", "/securityInfo/0", "/securityInfo/0/prefSecurityMethods"}},
		{"resolution", `{"notificationDestination":"https://x.example.com","securityInfo":[{"aefId":"aef9","prefSecurityMethods":["PSK"]},{"aefId":"aef1","prefSecurityMethods":["PSK"]}]}`, 400, []string{"/securityInfo/0/aefId", "/securityInfo/1/prefSecurityMethods"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problem(t, s.do(http.MethodPut, invokers+"inv1", "inv1", "application/json", tt.body), tt.status, "", tt.pointers...)
		})
	}
}

func TestGetInvokerInfo(t *testing.T) {
	s := newServer(t, nil)
	owner := s.mustCreate("inv1")
	tests := []struct {
		name   string
		target string
		caller string
		accept string
		status int
		cause  string
		authn  string // expected authenticationInfo of the one visible entry
		params []string
	}{
		{name: "plain", target: "inv1", caller: "aef2", status: 200},
		{name: "authenticationInfo=true", target: "inv1?authenticationInfo=true", caller: "aef2", accept: "application/json", status: 200, authn: owner.SecurityInfo[1].AuthenticationInfo},
		{name: "authenticationInfo=false", target: "inv1?authenticationInfo=false&authorizationInfo=true", caller: "aef2", accept: "*/*", status: 200},
		{name: "bad flag", target: "inv1?authenticationInfo=1", caller: "aef2", status: 400, cause: "INVALID_QUERY_PARAMETER", params: []string{"authenticationInfo"}},
		{name: "second flag bad", target: "inv1?authenticationInfo=true&authorizationInfo=yes", caller: "aef2", status: 400, cause: "INVALID_QUERY_PARAMETER", params: []string{"authorizationInfo"}},
		{name: "repeated flag", target: "inv1?authorizationInfo=true&authorizationInfo=true", caller: "aef2", status: 400, cause: "INVALID_QUERY_PARAMETER", params: []string{"authorizationInfo"}},
		{name: "malformed query", target: "inv1?authenticationInfo=%zz", caller: "aef2", status: 400, cause: "INVALID_QUERY_PARAMETER", params: []string{"query"}},
		{name: "not acceptable", target: "inv1", caller: "aef2", accept: "text/html", status: 406, cause: "NOT_ACCEPTABLE"},
		{name: "not acceptable, unknown caller", target: "inv1", caller: "stranger", accept: "text/html", status: 401, cause: security.CauseUnauthenticated},
		{name: "bad flag, invoker", target: "inv1?authenticationInfo=1", caller: "inv1", status: 403, cause: security.CauseRoleNotAllowed},
		{name: "AEF without entries", target: "inv1", caller: "aef3", status: 404, cause: security.CauseContextNotFound},
		{name: "no context", target: "inv2", caller: "aef3", status: 404, cause: security.CauseContextNotFound},
		{name: "invoker on its own context", target: "inv1", caller: "inv1", status: 403, cause: security.CauseRoleNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.req(http.MethodGet, invokers+tt.target, tt.caller, "", "")
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			w := s.serve(r)
			if tt.status != 200 {
				problem(t, w, tt.status, tt.cause, tt.params...)
				return
			}
			if w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
			}
			var got capif.ServiceSecurity
			decodeAs(t, w, &got)
			if len(got.SecurityInfo) != 1 || got.SecurityInfo[0].AefID != "aef2" || got.SecurityInfo[0].AuthenticationInfo != tt.authn {
				t.Errorf("body %s", w.Body)
			}
		})
	}
}

func TestRevocationRoutes(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	revoke := func(caller, id string, n capif.SecurityNotification) int {
		return s.json(http.MethodPost, invokers+id+"/delete", caller, n).Code
	}
	problem(t, s.json(http.MethodPost, invokers+"inv1/delete", "aef1", capif.SecurityNotification{APIInvokerID: "inv2", APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage}),
		400, security.CauseInvalidParameter, "/apiInvokerId")
	problem(t, s.json(http.MethodPost, invokers+"inv1/delete", "aef1", capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: capif.OverlimitUsage}),
		403, security.CauseRoleNotAllowed)
	problem(t, s.json(http.MethodPost, invokers+"inv1/delete", "aef1", capif.SecurityNotification{APIInvokerID: "inv1", APIIDs: []string{"apiC"}, Cause: capif.OverlimitUsage}),
		403, security.CauseAPINotPublished)
	problem(t, s.do(http.MethodPost, invokers+"inv1/delete", "aef1", "application/json", `{"apiInvokerId":"inv1","apiIds":"apiA","cause":"X"}`),
		400, CauseMalformedBody, "/apiIds")
	problem(t, s.do(http.MethodPost, invokers+"inv1/delete", "aef1", "text/plain", `{}`), 415, CauseUnsupportedMedia, "Content-Type")
	problem(t, s.do(http.MethodPost, invokers+"inv1/delete", "inv1", "text/plain", `{}`), 403, security.CauseRoleNotAllowed)
	problem(t, s.do(http.MethodDelete, invokers+"inv1", "aef3", "", ""), 404, security.CauseContextNotFound)
	problem(t, s.do(http.MethodDelete, invokers+"inv2", "aef1", "", ""), 404, security.CauseContextNotFound)
	problem(t, s.do(http.MethodDelete, invokers+"inv1", "", "", ""), 401, security.CauseUnauthenticated)
	if len(s.notifier.Sent()) != 0 {
		t.Fatal("refusals notified")
	}

	if code := revoke("aef1", "inv1", capif.SecurityNotification{APIInvokerID: "inv1", APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage}); code != http.StatusNoContent {
		t.Errorf("POST …/delete: %d", code)
	}
	w := s.do(http.MethodDelete, invokers+"inv1", "aef2", "", "")
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Errorf("DELETE: %d %q", w.Code, w.Body)
	}
	want := []any{
		capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage},
		capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: capif.UnexpectedReason},
	}
	if fmt.Sprint(bodies(s.notifier.Sent())) != fmt.Sprint(want) {
		t.Errorf("notifications %v", bodies(s.notifier.Sent()))
	}
	// The context is gone with its last entry.
	problem(t, s.do(http.MethodGet, invokers+"inv1", "aef1", "", ""), 404, security.CauseContextNotFound)
}

func tokenForm(v map[string]string) string {
	q := url.Values{}
	for k, x := range v {
		q.Set(k, x)
	}
	return q.Encode()
}

func TestTokenEndpoint(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	const form = "application/x-www-form-urlencoded"
	tokenURL := func(id string) string { return Base + "/securities/" + id + "/token" }
	good := map[string]string{"grant_type": "client_credentials", "client_id": "inv1", "client_secret": inv1Secret}
	with := func(k, v string) string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return tokenForm(m)
	}

	w := s.do(http.MethodPost, tokenURL("inv1"), "inv1", form, with("scope", "3gpp#aef1:alpha"))
	if w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Pragma") != "no-cache" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("token: %d %v %s", w.Code, w.Header(), w.Body)
	}
	var rsp capif.AccessTokenRsp
	decodeAs(t, w, &rsp)
	if !strings.HasPrefix(rsp.AccessToken, "signed.inv1.") || rsp.TokenType != "Bearer" || rsp.ExpiresIn <= 0 || rsp.Scope != "3gpp#aef1:alpha" {
		t.Errorf("token response %+v", rsp)
	}

	oauthTests := []struct {
		name          string
		id, caller    string
		contentType   string
		body          string
		status        int
		code          string
		wantProblem   string // a ProblemDetails cause instead of an OAuth error
		wantNoStore   bool
		wantDescribes string
		params        []string
	}{
		{"unknown caller", "stranger", "stranger", form, tokenForm(map[string]string{"grant_type": "client_credentials", "client_id": "stranger"}), 401, capif.InvalidClient, "", true, "", nil},
		{"no certificate", "inv1", "", form, with("", ""), 401, capif.InvalidClient, "", true, "", nil},
		{"AEF caller", "aef1", "aef1", form, tokenForm(map[string]string{"grant_type": "client_credentials", "client_id": "aef1"}), 403, "", security.CauseRoleNotAllowed, true, "", nil},
		{"securityId of another", "inv2", "inv1", form, with("", ""), 403, "", security.CauseNotOwner, true, "", nil},
		{"wrong media type", "inv1", "inv1", "application/json", `{"grant_type":"client_credentials"}`, 415, "", CauseUnsupportedMedia, true, "", []string{"Content-Type"}},
		{"too large", "inv1", "inv1", form, with("scope", strings.Repeat("a", MaxBody)), 413, "", security.CauseTooLarge, true, "", nil},
		{"repeated parameter", "inv1", "inv1", form, with("", "") + "&client_id=inv1", 400, capif.InvalidRequest, "", true, "client_id", nil},
		{"missing client_id", "inv1", "inv1", form, with("client_id", ""), 400, capif.InvalidRequest, "", true, "client_id", nil},
		{"client_id of another", "inv1", "inv1", form, with("client_id", "inv2"), 401, capif.InvalidClient, "", true, "client_id", nil},
		{"grant_type", "inv1", "inv1", form, with("grant_type", "password"), 400, capif.UnsupportedGrantType, "", true, "", nil},
		{"no secret", "inv1", "inv1", form, with("client_secret", ""), 401, capif.InvalidClient, "", true, "client_secret", nil},
		{"bad scope", "inv1", "inv1", form, with("scope", "3gpp#aef2:gamma"), 400, capif.InvalidScope, "", true, "aef2", nil},
		{"malformed scope", "inv1", "inv1", form, with("scope", "aef1:alpha"), 400, capif.InvalidScope, "", true, "3gpp#", nil},
		{"no OAUTH entry", "inv2", "inv2", form, tokenForm(map[string]string{"grant_type": "client_credentials", "client_id": "inv2"}), 400, capif.UnauthorizedClient, "", true, "", nil},
	}
	for _, tt := range oauthTests {
		t.Run(tt.name, func(t *testing.T) {
			w := s.do(http.MethodPost, tokenURL(tt.id), tt.caller, tt.contentType, tt.body)
			if tt.wantProblem != "" {
				problem(t, w, tt.status, tt.wantProblem, tt.params...)
			} else {
				e := oauthErr(t, w, tt.status, tt.code)
				if !strings.Contains(e.ErrorDescription, tt.wantDescribes) {
					t.Errorf("error_description %q does not mention %q", e.ErrorDescription, tt.wantDescribes)
				}
			}
			if tt.wantNoStore && w.Header().Get("Cache-Control") != "no-store" {
				t.Error("token error response is cacheable")
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	s := newServer(t, nil)
	w := s.do(http.MethodGet, "/.well-known/jwks.json", "", "", "")
	if w.Code != 200 || w.Header().Get("Cache-Control") != "public, max-age=300" || !strings.Contains(w.Body.String(), `"kid":"k1"`) {
		t.Errorf("JWKS: %d %v %s", w.Code, w.Header(), w.Body)
	}
	s.signer.Err = errors.New("kms down")
	problem(t, s.do(http.MethodGet, "/.well-known/jwks.json", "", "", ""), 500, "INTERNAL_ERROR")
}

func TestBackEndUnavailable(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	s.store.LoadErr = fmt.Errorf("dynamodb: throttled: %w", security.ErrUnavailable)
	for _, r := range []struct{ method, target, caller, ct, body string }{
		{http.MethodPut, invokers + "inv2", "inv2", "application/json", `{}`},
		{http.MethodGet, invokers + "inv1", "aef1", "", ""},
		{http.MethodDelete, invokers + "inv1", "aef1", "", ""},
		{http.MethodPost, Base + "/securities/inv1/token", "inv1", "application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=inv1"},
	} {
		w := s.do(r.method, r.target, r.caller, r.ct, r.body)
		problem(t, w, 503, security.CauseTemporarilyUnavail)
		if w.Header().Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", r.method, r.target)
		}
		if strings.Contains(w.Body.String(), "dynamodb") {
			t.Errorf("internals in the body: %s", w.Body)
		}
	}
	// Conflicts until MaxAttempts: 503 with Retry-After, nothing revoked.
	s.store.LoadErr = nil
	s.store.Conflicts = -1
	w := s.do(http.MethodDelete, invokers+"inv1", "aef1", "", "")
	problem(t, w, 503, security.CauseTemporarilyUnavail)
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	s.store.Conflicts = 0
	if w := s.do(http.MethodGet, invokers+"inv1", "aef1", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "aef1") {
		t.Errorf("after the failed revocation: %d %s", w.Code, w.Body)
	}
}

// A CertificateSource error is an unknown caller; the reason is logged at debug level only.
func TestCertificateSourceError(t *testing.T) {
	s := newServer(t, nil)
	opts := s.opts
	opts.Certificates = func(*http.Request) (*x509.Certificate, error) { return nil, errors.New("PEM does not verify") }
	h := All(s.svc, opts)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, s.req(http.MethodPut, invokers+"inv1", "inv1", "application/json", `{}`))
	problem(t, w, 401, security.CauseUnauthenticated)
	if !strings.Contains(s.logs.String(), "PEM does not verify") {
		t.Errorf("reason not logged: %s", s.logs)
	}
}
