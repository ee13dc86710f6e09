package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/httpapi"
)

// suite is the list of subtests every back-end set-up runs, against one shared runner (tests
// that restart or reconfigure start their own on the same back end).
var suite = []struct {
	name string
	run  func(t *testing.T, r *runner)
}{
	{"Routes", testRoutes},
	{"UnknownRoutesAndMethods", testUnknownRoutesAndMethods},
	{"BadInputNever5xx", testBadInput},
	{"EscapedPathIDs", testEscapedPathIDs},
	{"Identity", testIdentity},
	{"IdentityBeforeBody", testIdentityBeforeBody},
	{"CertificateShapes", testCertificateShapes},
	{"HTTP2", testHTTP2},
	{"AEFIsolation", testAEFIsolation},
	{"Validation", testValidation},
	{"MethodSelection", testMethodSelection},
	{"ContextLifecycle", testContextLifecycle},
	{"InfoFlags", testInfoFlags},
	{"PSK", testPSK},
	{"ContextTooLarge", testContextTooLarge},
	{"Revocation", testRevocation},
	{"RevocationFailingListener", testRevocationFailingListener},
	{"TokenOrder", testTokenOrder},
	{"TokenClientSecret", testTokenClientSecret},
	{"TokenScope", testTokenScope},
	{"TokenJWT", testTokenJWT},
	{"TokenTTLAndAPIRoot", testTokenTTLAndAPIRoot},
	{"StockOAuth2", testStockOAuth2},
	{"StockOAuth2Scopes", testStockOAuth2Scopes},
	{"StockJWXVerifier", testStockJWXVerifier},
	{"MetadataPathForm", testMetadataPathForm},
	{"Rel19SecurityInfo", testRel19SecurityInfo},
	{"Rel19TokenRequest", testRel19TokenRequest},
	{"Rel19Revocation", testRel19Revocation},
	{"RestartPersistence", testRestartPersistence},
	{"Concurrency", testConcurrency},
	{"CertCommand", testCertCommand},
	{"GracefulShutdown", testGracefulShutdown},
	{"BrokenBodies", testBrokenBodies},
	{"TokenBinding", testTokenBinding},
	{"DeliveryRetries", testDeliveryRetries},
	{"DeliveryDeadLetter", testDeliveryDeadLetter},
	{"FieldClients", testFieldClients},
	{"FieldClientPlaceholders", testFieldClientPlaceholders},
	{"BadClientCertificates", testBadClientCertificates},
}

// TestRunnerHTTP runs the suite against every back-end set-up, over real TLS with client
// certificates. Every response is checked by the harness (3GPP schemas, headers, access log).
func TestRunnerHTTP(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			r := startRunner(t, b)
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, r)
				})
			}
		})
	}
}

// testRoutes walks every route once with its success status.
func testRoutes(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner, a, b := r.as(t, inv), r.as(t, aefA), r.as(t, aefB)

	resp := owner.create(inv, serviceSecurity(someDest, aefEntry(aefA, "", "OAUTH"), aefEntry(aefB, apiB1, "PSK")))
	wantStatus(t, resp, http.StatusCreated)
	if got, want := resp.header.Get("Location"), r.url+"/capif-security/v1/trustedInvokers/"+inv; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	ss := decode[capif.ServiceSecurity](t, resp)
	if len(ss.SecurityInfo) != 2 || ss.SecurityInfo[0].SelSecurityMethod != capif.OAUTH || ss.SecurityInfo[1].SelSecurityMethod != capif.PSK {
		t.Errorf("created %+v", ss.SecurityInfo)
	}

	resp = owner.update(inv, serviceSecurity(someDest+"/v2", aefEntry(aefA, "", "OAUTH"), aefEntry(aefB, apiB1, "PSK")))
	wantStatus(t, resp, http.StatusOK)
	if ss := decode[capif.ServiceSecurity](t, resp); ss.NotificationDestination != someDest+"/v2" {
		t.Errorf("updated destination %q", ss.NotificationDestination)
	}

	resp = a.get(inv, "authenticationInfo=true&authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	if ss := decode[capif.ServiceSecurity](t, resp); len(ss.SecurityInfo) != 1 || ss.SecurityInfo[0].AefID != aefA {
		t.Errorf("aef-a sees %+v", ss.SecurityInfo)
	}

	resp = owner.tokenReq(inv, url.Values{"grant_type": {"client_credentials"}, "client_id": {inv}})
	wantStatus(t, resp, http.StatusOK)
	if tr := decode[capif.AccessTokenRsp](t, resp); tr.TokenType != "Bearer" || tr.AccessToken == "" {
		t.Errorf("token response %+v", tr)
	}
	if keys := r.jwks(t); len(keys) == 0 {
		t.Error("empty JWKS")
	}

	wantStatus(t, b.revoke(inv, capif.SecurityNotification{APIInvokerID: inv, AefID: aefB, APIIDs: []string{apiB1}, Cause: capif.OverlimitUsage}), http.StatusNoContent)
	wantStatus(t, a.revokeAll(inv), http.StatusNoContent)
	wantProblem(t, a.get(inv, ""), http.StatusNotFound)
}

// testUnknownRoutesAndMethods: 404 problem+json for unknown paths, 405 with Allow for known ones.
func testUnknownRoutesAndMethods(t *testing.T, r *runner) {
	c := r.as(t, r.freshInvoker(t))
	for _, p := range []string{
		"/",
		"/capif-security/v1",
		"/capif-security/v1/trustedInvokers",
		"/capif-security/v1/trustedInvokers/",
		"/capif-security/v1/trustedInvokers//update",
		"/capif-security/v1/trustedInvokers/x/extra",
		"/capif-security/v1/trustedInvokers/x/update/more",
		"/capif-security/v2/trustedInvokers/x",
		"/capif-security/v1/securities/x",
		"/capif-security/v1/securities/x/token/more",
		"/.well-known/jwks",
	} {
		pd := wantProblem(t, c.send(http.MethodGet, p, "", nil), http.StatusNotFound)
		if pd.Cause == "" {
			t.Errorf("GET %s: 404 without cause", p)
		}
	}
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPatch, "/capif-security/v1/trustedInvokers/x", "DELETE, GET, PUT"},
		{http.MethodPost, "/capif-security/v1/trustedInvokers/x", "DELETE, GET, PUT"},
		{http.MethodGet, "/capif-security/v1/trustedInvokers/x/update", "POST"},
		{http.MethodPut, "/capif-security/v1/trustedInvokers/x/delete", "POST"},
		{http.MethodGet, "/capif-security/v1/securities/x/token", "POST"},
		{http.MethodPost, "/.well-known/jwks.json", "GET"},
	} {
		resp := c.send(tc.method, tc.path, "application/json", []byte("{}"))
		wantProblem(t, resp, http.StatusMethodNotAllowed)
		if got := resp.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// testBadInput: malformed, mistyped, oversized and wrongly typed bodies and queries are client
// errors on every body-taking route; the harness fails any 5xx.
func testBadInput(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner, a := r.as(t, inv), r.as(t, aefA)
	// A context, so the AEF routes reach their body checks.
	wantStatus(t, owner.create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)

	over := func(n int) []byte {
		return append(append([]byte(`{"notificationDestination":"`), bytes.Repeat([]byte("a"), n)...), `"}`...)
	}
	type tc struct {
		name, ctype string
		body        []byte
		status      int
		param       string // an invalidParams pointer the 400 names, if any
	}
	jsonCases := []tc{
		{"truncated JSON", "application/json", []byte(`{"securityInfo": [`), 400, ""},
		{"array", "application/json", []byte(`[]`), 400, ""},
		{"string", "application/json", []byte(`"x"`), 400, ""},
		{"empty body", "application/json", nil, 400, ""},
		{"trailing data", "application/json", []byte(`{} {}`), 400, ""},
		{"wrong member type", "application/json", []byte(`{"securityInfo":"x","notificationDestination":"https://e.example.com"}`), 400, "/securityInfo"},
		{"deep nesting", "application/json", append(bytes.Repeat([]byte("["), 20000), bytes.Repeat([]byte("]"), 20000)...), 400, ""},
		{"invalid UTF-8", "application/json", []byte("{\"notificationDestination\":\"\xff\xfe\"}"), 400, ""},
		{"text/plain", "text/plain", []byte(`{}`), 415, ""},
		{"no Content-Type", "", []byte(`{}`), 415, ""},
		{"form", "application/x-www-form-urlencoded", []byte(`a=b`), 415, ""},
		{"bad media type", "application/", []byte(`{}`), 415, ""},
		{"1 MiB + 1", "application/json", over(httpapi.MaxBody + 1 - len(`{"notificationDestination":""}`)), 413, ""},
		{"1 MiB + 64 KiB", "application/json", over(httpapi.MaxBody + 64<<10), 413, ""},
	}
	routes := []struct {
		name, method, path string
		as                 *client
	}{
		{"PUT", http.MethodPut, invPath(inv), owner},
		{"update", http.MethodPost, invPath(inv) + "/update", owner},
		{"delete", http.MethodPost, invPath(inv) + "/delete", a},
	}
	for _, rt := range routes {
		for _, c := range jsonCases {
			if rt.name == "delete" && c.param == "/securityInfo" {
				c.param = "" // a SecurityNotification has no securityInfo; the member is ignored
			}
			resp := rt.as.send(rt.method, rt.path, c.ctype, c.body)
			if resp.status != c.status {
				t.Errorf("%s %s: status %d, want %d: %.300s", rt.name, c.name, resp.status, c.status, resp.body)
				continue
			}
			if c.param != "" {
				wantInvalid(t, resp, c.param)
			}
		}
	}
	// The context is untouched by all of that.
	resp := a.get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	if ss := decode[capif.ServiceSecurity](t, resp); ss.NotificationDestination != someDest || len(ss.SecurityInfo) != 1 {
		t.Errorf("context changed by rejected requests: %+v", ss)
	}
	// A charset parameter is fine.
	resp = owner.send(http.MethodPost, invPath(inv)+"/update", "application/json; charset=utf-8",
		[]byte(`{"notificationDestination":"`+someDest+`","securityInfo":[{"aefId":"aef-a","apiId":"api-a1","prefSecurityMethods":["OAUTH"]}]}`))
	wantStatus(t, resp, http.StatusOK)

	// Token endpoint.
	for _, c := range []tc{
		{"JSON", "application/json", []byte(`{"grant_type":"client_credentials"}`), 415, ""},
		{"no Content-Type", "", []byte(`grant_type=client_credentials&client_id=` + inv), 415, ""},
		{"1 MiB + 1", "application/x-www-form-urlencoded", append([]byte("scope="), bytes.Repeat([]byte("a"), httpapi.MaxBody)...), 413, ""},
		{"bad escape", "application/x-www-form-urlencoded", []byte("grant_type=%zz&client_id=" + inv), 400, ""},
		{"semicolon", "application/x-www-form-urlencoded", []byte("grant_type=client_credentials;client_id=" + inv), 400, ""},
		{"empty", "application/x-www-form-urlencoded", nil, 400, ""},
	} {
		resp := owner.send(http.MethodPost, tokenPath(inv), c.ctype, c.body)
		if resp.status != c.status {
			t.Errorf("token %s: status %d, want %d: %.300s", c.name, resp.status, c.status, resp.body)
		}
		if c.status == 400 {
			wantTokenErr(t, resp, 400, capif.InvalidRequest)
		}
	}

	// GET query flags and Accept.
	for _, q := range []string{"authenticationInfo=yes", "authorizationInfo=1", "authenticationInfo=true&authenticationInfo=false", "authenticationInfo="} {
		wantProblem(t, a.get(inv, q), http.StatusBadRequest)
	}
	wantProblem(t, a.send(http.MethodGet, invPath(inv), "", nil, "Accept", "text/html"), http.StatusNotAcceptable)
	wantStatus(t, a.send(http.MethodGet, invPath(inv), "", nil, "Accept", "text/html, application/*;q=0.5"), http.StatusOK)
}

// testEscapedPathIDs: ids needing escaping stay one path segment, are echoed escaped in
// Location, and never break routing.
func testEscapedPathIDs(t *testing.T, r *runner) {
	owner, a := r.as(t, escapedInvoker), r.as(t, aefA)
	resp := owner.create(escapedInvoker, serviceSecurity(someDest, aefEntry(aefA, apiA3, "PKI")))
	wantStatus(t, resp, http.StatusCreated)
	want := r.url + "/capif-security/v1/trustedInvokers/inv%2Fwith%25percent-and%2Fslash"
	if got := resp.header.Get("Location"); got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	wantStatus(t, a.get(escapedInvoker, ""), http.StatusOK)
	wantStatus(t, owner.tokenReq(escapedInvoker, url.Values{"grant_type": {"client_credentials"}, "client_id": {escapedInvoker}}), http.StatusBadRequest) // PKI only: unauthorized_client
	wantStatus(t, owner.update(escapedInvoker, serviceSecurity(someDest, aefEntry(aefA, apiA3, "OAUTH"))), http.StatusOK)
	wantStatus(t, owner.tokenReq(escapedInvoker, url.Values{"grant_type": {"client_credentials"}, "client_id": {escapedInvoker}}), http.StatusOK)

	// The unescaped forms are other resources: "/" splits segments (404), "%" alone is no escape.
	wantProblem(t, a.send(http.MethodGet, "/capif-security/v1/trustedInvokers/inv/with%25percent-and/slash", "", nil), http.StatusNotFound)
	// Ids with spaces or an encoded slash that nobody registered: one segment, ordinary answers.
	for _, id := range []string{"has space", "a/b", "%2F", "100%", "x%2Fy", "\xff\xfe", "nul\x00id"} {
		wantProblem(t, a.get(id, ""), http.StatusNotFound)
		wantProblem(t, a.revokeAll(id), http.StatusNotFound)
		wantProblem(t, owner.create(id, serviceSecurity(someDest, aefEntry(aefA, "", "OAUTH"))), http.StatusForbidden)
		wantProblem(t, owner.send(http.MethodPost, tokenPath(id), "application/x-www-form-urlencoded", []byte("grant_type=client_credentials&client_id="+url.QueryEscape(id))), http.StatusForbidden)
	}
	// An id far longer than any registry id is simply unknown.
	long := strings.Repeat("z", 5000)
	wantProblem(t, a.get(long, ""), http.StatusNotFound)
	wantProblem(t, owner.update(long, serviceSecurity(someDest, aefEntry(aefA, "", "OAUTH"))), http.StatusForbidden)
}

// testIdentity: 401 for no, unknown or foreign certificates; 403 for the wrong role or another
// invoker's id (whether or not it exists); 404 only after that.
func testIdentity(t *testing.T, r *runner) {
	inv, other, ghost := r.freshInvoker(t), r.freshInvoker(t), "no-such-invoker"
	owner, otherC, a := r.as(t, inv), r.as(t, other), r.as(t, aefA)
	body := serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))
	wantStatus(t, owner.create(inv, body), http.StatusCreated)
	notif := func(id string) capif.SecurityNotification {
		return capif.SecurityNotification{APIInvokerID: id, APIIDs: []string{apiA1}, Cause: capif.UnexpectedReason}
	}
	type op func(c *client, id string) response
	ops := map[string]op{
		"PUT":    func(c *client, id string) response { return c.create(id, body) },
		"update": func(c *client, id string) response { return c.update(id, body) },
		"GET":    func(c *client, id string) response { return c.get(id, "") },
		"DELETE": func(c *client, id string) response { return c.revokeAll(id) },
		"delete": func(c *client, id string) response { return c.revoke(id, notif(id)) },
	}
	invokerOps, aefOps := []string{"PUT", "update"}, []string{"GET", "DELETE", "delete"}

	// 401: no certificate, an unknown CN from the right CA.
	for name, do := range ops {
		for _, c := range []*client{r.anonymous(t), r.as(t, "nobody-registered")} {
			pd := wantProblem(t, do(c, inv), http.StatusUnauthorized)
			if pd.Cause == "" {
				t.Errorf("%s: 401 without cause", name)
			}
		}
		// A certificate from another CA never authenticates: the API answers 401 (the handshake
		// completes; testBadClientCertificates sends such certificates whatever the server asks).
		if resp, err := r.foreign(t, inv).try(http.MethodGet, invPath(inv), "", nil); err != nil || resp.status != http.StatusUnauthorized {
			t.Errorf("%s: foreign certificate got %d, %v", name, resp.status, err)
		}
	}
	// 403: the wrong role, for existing and unknown ids alike.
	for _, name := range invokerOps {
		for _, id := range []string{inv, ghost} {
			wantProblem(t, ops[name](a, id), http.StatusForbidden)
		}
	}
	for _, name := range aefOps {
		for _, id := range []string{inv, ghost, other} {
			wantProblem(t, ops[name](owner, id), http.StatusForbidden)
		}
	}
	// 403: another invoker's id, whether or not it has a context or exists.
	for _, name := range invokerOps {
		for _, id := range []string{inv, ghost, aefA} {
			wantProblem(t, ops[name](otherC, id), http.StatusForbidden)
		}
	}
	// Then 404s.
	for _, name := range aefOps {
		wantProblem(t, ops[name](a, other), http.StatusNotFound)
		wantProblem(t, ops[name](a, ghost), http.StatusNotFound)
	}
	wantProblem(t, otherC.update(other, body), http.StatusNotFound)
	// The context is intact.
	wantStatus(t, a.get(inv, ""), http.StatusOK)
}

// testCertificateShapes: the identity is the single CN of a certificate the runner's CA issued
// for client authentication and that is valid now; anything else is no identity.
func testCertificateShapes(t *testing.T, r *runner) {
	oidCN := asn1.ObjectIdentifier{2, 5, 4, 3}
	now := time.Now()
	for _, tc := range []struct {
		name string
		tmpl x509.Certificate
		tls  bool // the TLS layer may refuse it instead of a 401
	}{
		{"two CNs", x509.Certificate{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: aefA}, {Type: oidCN, Value: aefB}}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, false},
		{"no CN", x509.Certificate{Subject: pkix.Name{Organization: []string{aefA}}, DNSNames: []string{aefA},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, false},
		{"CN too long", x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("a", 300)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, false},
		{"server certificate", x509.Certificate{Subject: pkix.Name{CommonName: aefA},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, true},
		{"expired", x509.Certificate{Subject: pkix.Name{CommonName: aefA},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}, true},
		{"not yet valid", x509.Certificate{Subject: pkix.Name{CommonName: aefA},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}, true},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := tc.tmpl
		tmpl.SerialNumber = big.NewInt(now.UnixNano())
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, r.ca.Cert, &key.PublicKey, r.ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		// The log must show no caller: none of these names anyone.
		c := r.newClient(t, "", []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, tc.name)
		resp, err := c.try(http.MethodGet, invPath("someone"), "", nil)
		switch {
		case err != nil && !tc.tls:
			t.Errorf("%s: refused by TLS: %v", tc.name, err)
		case err == nil:
			if pd := wantProblem(t, resp, http.StatusUnauthorized); pd.Cause == "" {
				t.Errorf("%s: 401 without cause", tc.name)
			}
		}
	}
}

// testHTTP2: the runner speaks HTTP/2 to clients that offer it (curl does), with the same
// answers.
func testHTTP2(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	c := r.as(t, inv)
	c.hc.Transport.(*checking).base.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := c.hc.Get(r.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	wantStatus(t, c.create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	wantStatus(t, c.tokenReq(inv, grant(inv)), http.StatusOK)
	big := append([]byte(`{"notificationDestination":"`), bytes.Repeat([]byte("a"), 2*httpapi.MaxBody)...)
	wantProblem(t, c.send(http.MethodPost, invPath(inv)+"/update", "application/json", append(big, `"}`...)), http.StatusRequestEntityTooLarge)
	wantProblem(t, c.send(http.MethodPatch, invPath(inv), "", nil), http.StatusMethodNotAllowed)
	wantTokenErr(t, r.anonymous(t).tokenReq(inv, grant(inv)), http.StatusUnauthorized, capif.InvalidClient)
}

// testIdentityBeforeBody: a caller who is not allowed learns nothing about its body.
func testIdentityBeforeBody(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	garbage := []byte(`{not json`)
	for _, tc := range []struct {
		name   string
		c      *client
		method string
		path   string
		ctype  string
		status int
	}{
		{"anonymous PUT, bad JSON", r.anonymous(t), http.MethodPut, invPath(inv), "application/json", 401},
		{"anonymous PUT, bad type", r.anonymous(t), http.MethodPut, invPath(inv), "text/plain", 401},
		{"AEF PUT, bad JSON", r.as(t, aefA), http.MethodPut, invPath(inv), "application/json", 403},
		{"other invoker update, bad type", r.as(t, r.freshInvoker(t)), http.MethodPost, invPath(inv) + "/update", "text/plain", 403},
		{"invoker delete, bad JSON", r.as(t, inv), http.MethodPost, invPath(inv) + "/delete", "application/json", 403},
		{"unknown CN delete, bad type", r.as(t, "stranger"), http.MethodPost, invPath(inv) + "/delete", "text/plain", 401},
		{"AEF delete without context, bad JSON", r.as(t, aefA), http.MethodPost, invPath(inv) + "/delete", "application/json", 400},
		{"owner PUT, bad JSON", r.as(t, inv), http.MethodPut, invPath(inv), "application/json", 400},
	} {
		resp := tc.c.send(tc.method, tc.path, tc.ctype, garbage)
		if resp.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.status, tc.status, resp.body)
		}
	}
}

// testAEFIsolation: an AEF sees and revokes only its own entries; with none in an existing
// context it gets 403; 404 only without a context.
func testAEFIsolation(t *testing.T, r *runner) {
	inv, bare := r.freshInvoker(t), r.freshInvoker(t)
	owner, a, b, c, idle := r.as(t, inv), r.as(t, aefA), r.as(t, aefB), r.as(t, aefC), r.as(t, aefIdle)
	wantStatus(t, owner.create(inv, serviceSecurity(someDest,
		aefEntry(aefA, "", "OAUTH"),
		ifaceEntry(ifaceA1, "", "PKI"),
		aefEntry(aefB, apiB1, "PSK"),
		ifaceEntry(ifaceB2, apiB2, "OAUTH"),
	)), http.StatusCreated)

	view := func(cl *client) []capif.SecurityInformation {
		t.Helper()
		resp := cl.get(inv, "authenticationInfo=true")
		wantStatus(t, resp, http.StatusOK)
		return decode[capif.ServiceSecurity](t, resp).SecurityInfo
	}
	va, vb := view(a), view(b)
	if len(va) != 2 || va[0].AefID != aefA || va[1].InterfaceDetails == nil || va[1].InterfaceDetails.Fqdn != ifaceA1.Fqdn {
		t.Errorf("aef-a sees %+v", va)
	}
	if len(vb) != 2 || vb[0].AefID != aefB || vb[1].InterfaceDetails == nil || vb[1].InterfaceDetails.Ipv6Addr != ifaceB2.Ipv6Addr {
		t.Errorf("aef-b sees %+v", vb)
	}

	// AEFs with no entry in this existing context: 404 on all three routes, as for no context,
	// so that no AEF learns which invokers have one.
	for _, cl := range []*client{c, idle} {
		wantProblem(t, cl.get(inv, ""), http.StatusNotFound)
		wantProblem(t, cl.revokeAll(inv), http.StatusNotFound)
		wantProblem(t, cl.revoke(inv, capif.SecurityNotification{APIInvokerID: inv, APIIDs: []string{apiC1}, Cause: capif.UnexpectedReason}), http.StatusNotFound)
		// No context at all: 404.
		wantProblem(t, cl.get(bare, ""), http.StatusNotFound)
		wantProblem(t, cl.revokeAll(bare), http.StatusNotFound)
		wantProblem(t, cl.revoke(bare, capif.SecurityNotification{APIInvokerID: bare, APIIDs: []string{apiC1}, Cause: capif.UnexpectedReason}), http.StatusNotFound)
	}

	// aef-a revokes everything it can: only its own entries go.
	wantStatus(t, a.revokeAll(inv), http.StatusNoContent)
	wantProblem(t, a.get(inv, ""), http.StatusNotFound)
	if got := view(b); !equalJSON(t, got, vb) {
		t.Errorf("aef-b's entries changed when aef-a revoked: %+v, was %+v", got, vb)
	}
}
