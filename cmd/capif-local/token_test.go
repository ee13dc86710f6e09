package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/settings"
)

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func grant(inv string, kv ...string) url.Values {
	return form(append([]string{"grant_type", "client_credentials", "client_id", inv}, kv...)...)
}

// oauthContext gives inv a context with OAUTH for all of aef-a and beta-two, and PSK for
// beta-one.
func oauthContext(t testing.TB, r *runner, inv string) {
	t.Helper()
	wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(someDest,
		aefEntry(aefA, "", "OAUTH"),
		aefEntry(aefB, apiB1, "PSK"),
		aefEntry(aefB, apiB2, "OAUTH"),
	)), http.StatusCreated)
}

// testTokenOrder: the token endpoint's checks, in order, each shown to win over the later ones.
func testTokenOrder(t *testing.T, r *runner) {
	inv, other, noOAuth, none := r.freshInvoker(t), r.freshInvoker(t), r.freshInvoker(t), r.freshInvoker(t)
	oauthContext(t, r, inv)
	oauthContext(t, r, other)
	wantStatus(t, r.as(t, noOAuth).create(noOAuth, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PSK"), aefEntry(aefA, apiA3, "PKI"))), http.StatusCreated)
	owner := r.as(t, inv)
	const formType = "application/x-www-form-urlencoded"

	// 1. No or unknown certificate: 401 invalid_client, whatever the body.
	wantTokenErr(t, r.anonymous(t).tokenReq(inv, grant(inv)), 401, capif.InvalidClient)
	wantTokenErr(t, r.as(t, "nobody-registered").tokenReq(inv, grant(inv)), 401, capif.InvalidClient)
	wantTokenErr(t, r.anonymous(t).send(http.MethodPost, tokenPath(inv), "text/plain", []byte("x")), 401, capif.InvalidClient)
	if resp, err := r.foreign(t, inv).try(http.MethodPost, tokenPath(inv), formType, []byte(grant(inv).Encode())); err == nil {
		wantTokenErr(t, resp, 401, capif.InvalidClient)
	}
	// 2. An AEF, or another invoker's securityId: 403 ProblemDetails, whatever the body.
	wantProblem(t, r.as(t, aefA).tokenReq(inv, grant(inv)), http.StatusForbidden)
	wantProblem(t, r.as(t, aefA).tokenReq(aefA, grant(aefA)), http.StatusForbidden)
	wantProblem(t, owner.tokenReq(other, grant(other)), http.StatusForbidden)
	wantProblem(t, owner.send(http.MethodPost, tokenPath(other), "application/json", []byte("{")), http.StatusForbidden)
	wantProblem(t, owner.tokenReq("no-such-invoker", grant("no-such-invoker")), http.StatusForbidden)
	// 3. Not form-urlencoded: 415 ProblemDetails, even with a wrong client_id in it.
	wantProblem(t, owner.send(http.MethodPost, tokenPath(inv), "application/json", []byte(`{"grant_type":"client_credentials","client_id":"x"}`)), http.StatusUnsupportedMediaType)
	wantProblem(t, owner.send(http.MethodPost, tokenPath(inv), "multipart/form-data; boundary=x", []byte("--x--")), http.StatusUnsupportedMediaType)
	// 4. Unparsable, missing or repeated parameters: 400 invalid_request.
	for name, body := range map[string]string{
		"bad escape":          "grant_type=client_credentials&client_id=" + inv + "&scope=%zz",
		"missing grant_type":  "client_id=" + inv,
		"missing client_id":   "grant_type=client_credentials",
		"empty client_id":     "grant_type=client_credentials&client_id=",
		"repeated scope":      grant(inv, "scope", "3gpp#aef-a:alpha-one", "scope", "3gpp#aef-a:alpha-two").Encode(),
		"repeated client_id":  grant(inv, "client_id", inv).Encode(),
		"repeated grant":      "grant_type=password&" + grant(inv).Encode(),
		"repeated secret":     grant(inv, "client_secret", "a", "client_secret", "b").Encode(),
		"wrong client_id too": "client_id=someone-else&grant_type=client_credentials&grant_type=password",
	} {
		resp := owner.send(http.MethodPost, tokenPath(inv), formType, []byte(body))
		if e := wantTokenErr(t, resp, 400, capif.InvalidRequest); e.ErrorDescription == "" {
			t.Errorf("%s: invalid_request without description", name)
		}
	}
	// 5. client_id ≠ the certificate: 401 invalid_client, before the grant type.
	wantTokenErr(t, owner.tokenReq(inv, form("grant_type", "password", "client_id", other)), 401, capif.InvalidClient)
	wantTokenErr(t, owner.tokenReq(inv, grant(other)), 401, capif.InvalidClient)
	// 6. grant_type ≠ client_credentials: 400 unsupported_grant_type.
	for _, g := range []string{"password", "authorization_code", "CLIENT_CREDENTIALS", "client_credentials "} {
		wantTokenErr(t, owner.tokenReq(inv, form("grant_type", g, "client_id", inv)), 400, capif.UnsupportedGrantType)
	}
	// 7. No context, or no OAUTH entry: 400 unauthorized_client.
	wantTokenErr(t, r.as(t, none).tokenReq(none, grant(none)), 400, capif.UnauthorizedClient)
	wantTokenErr(t, r.as(t, noOAuth).tokenReq(noOAuth, grant(noOAuth)), 400, capif.UnauthorizedClient)
	wantTokenErr(t, r.as(t, noOAuth).tokenReq(noOAuth, grant(noOAuth, "scope", "3gpp#aef-b:beta-one")), 400, capif.UnauthorizedClient)
	// An invoker without an onboarding secret may send any client_secret: it is ignored.
	wantStatus(t, owner.tokenReq(inv, grant(inv, "client_secret", "whatever")), http.StatusOK)
	// RNAA parameters do not break a client-credentials request.
	wantStatus(t, owner.tokenReq(inv, grant(inv, "resOwnerId", "ue-1", "authCode", "c")), http.StatusOK)
}

// testTokenClientSecret: for an invoker onboarded with a secret, client_secret is required and
// must match; it is checked after grant_type and before the context.
func testTokenClientSecret(t *testing.T, r *runner) {
	inv, secret := r.freshSecretInvoker(t)
	bare, bareSecret := r.freshSecretInvoker(t)
	c := r.as(t, inv)
	// Before any context: a wrong secret is invalid_client, the right one unauthorized_client.
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", "wrong")), 401, capif.InvalidClient)
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", secret)), 400, capif.UnauthorizedClient)
	wantTokenErr(t, r.as(t, bare).tokenReq(bare, grant(bare, "client_secret", bareSecret)), 400, capif.UnauthorizedClient)
	// The grant type is checked first.
	wantTokenErr(t, c.tokenReq(inv, form("grant_type", "password", "client_id", inv, "client_secret", "wrong")), 400, capif.UnsupportedGrantType)

	oauthContext(t, r, inv)
	wantTokenErr(t, c.tokenReq(inv, grant(inv)), 401, capif.InvalidClient)
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", "")), 401, capif.InvalidClient)
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", secret+"x")), 401, capif.InvalidClient)
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", strings.ToUpper(secret))), 401, capif.InvalidClient)
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", bareSecret)), 401, capif.InvalidClient) // another invoker's
	// A wrong secret wins over a bad scope.
	wantTokenErr(t, c.tokenReq(inv, grant(inv, "client_secret", "wrong", "scope", "nonsense")), 401, capif.InvalidClient)
	wantStatus(t, c.tokenReq(inv, grant(inv, "client_secret", secret)), http.StatusOK)
}

// testTokenScope: a scope outside the OAUTH entries is invalid_scope with a precise description;
// malformed scopes are invalid_scope too (never a 5xx); no scope grants every OAUTH entry.
func testTokenScope(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	c := r.as(t, inv)
	all := "3gpp#aef-a:alpha-one,alpha-three,alpha-two;aef-b:beta-two"
	if got := scopeOf(t, c, inv); got != all {
		t.Errorf("scope %q, want %q", got, all)
	}
	for _, tc := range []struct{ scope, want string }{
		{"3gpp#aef-a:alpha-one", "3gpp#aef-a:alpha-one"},
		{"3gpp#aef-b:beta-two;aef-a:alpha-two,alpha-one", "3gpp#aef-a:alpha-one,alpha-two;aef-b:beta-two"},
		{"3gpp#aef-a:alpha-one,alpha-one", "3gpp#aef-a:alpha-one"},
	} {
		resp := c.tokenReq(inv, grant(inv, "scope", tc.scope))
		wantStatus(t, resp, http.StatusOK)
		if got := decode[capif.AccessTokenRsp](t, resp).Scope; got != tc.want {
			t.Errorf("scope %q granted %q, want %q", tc.scope, got, tc.want)
		}
	}
	// Outside the OAUTH entries: the description names what is missing.
	for _, tc := range []struct {
		scope    string
		mentions []string
	}{
		{"3gpp#aef-b:beta-one", []string{`"beta-one"`, `"aef-b"`}},     // a PSK entry
		{"3gpp#aef-c:gamma-one", []string{`"aef-c"`}},                  // not in the context
		{"3gpp#aef-a:alpha-one;aef-x:thing", []string{`"aef-x"`}},      // unknown AEF
		{"3gpp#aef-a:alpha-four", []string{`"alpha-four"`, `"aef-a"`}}, // unknown API name
		{"3gpp#aef-a:api-a1", []string{`"api-a1"`}},                    // an apiId, not a name
		{"3gpp#aef-b:beta-two,beta-one", []string{`"beta-one"`}},       // one of two
		{"3gpp#\xff\xfe:\x00", nil},                                    // well-formed bytes no AEF has
	} {
		e := wantTokenErr(t, c.tokenReq(inv, grant(inv, "scope", tc.scope)), 400, capif.InvalidScope)
		for _, m := range tc.mentions {
			if !strings.Contains(e.ErrorDescription, m) {
				t.Errorf("scope %q: description %q does not mention %s", tc.scope, e.ErrorDescription, m)
			}
		}
	}
	// Malformed.
	for _, s := range []string{
		"aef-a:alpha-one",               // no 3gpp#
		"3GPP#aef-a:alpha-one",          // prefix is case-sensitive
		"3gpp#",                         // nothing after the prefix
		"3gpp#aef-a",                    // no colon
		"3gpp#:alpha-one",               // empty aefId
		"3gpp#aef-a:",                   // empty names
		"3gpp#aef-a:alpha-one,",         // empty name
		"3gpp#aef-a:,alpha-one",         // empty name
		"3gpp#aef-a:alpha-one;",         // empty group
		"3gpp#;aef-a:alpha-one",         // empty group
		"3gpp#aef-a:alpha-one;;aef-b:x", // empty group
		"3gpp#aef-a:alpha one",          // space in a name
		"3gpp#aef a:alpha-one",          // space in an aefId
		"3gpp#aef-a:alpha-one:x",        // two colons
		"3gpp#aef-a#:alpha-one",         // separator in aefId
		"3gpp#aef-a:alpha-one;aef-b",    // second group without colon
		"3gpp#" + strings.Repeat("aef-a:alpha-one;", 5000) + "x",
		" 3gpp#aef-a:alpha-one",
	} {
		// Reported as malformed, not as an authorization the context lacks.
		e := wantTokenErr(t, c.tokenReq(inv, grant(inv, "scope", s)), 400, capif.InvalidScope)
		if e.ErrorDescription == "" || strings.Contains(e.ErrorDescription, "not authorized") {
			t.Errorf("scope %.40q: description %q does not say it is malformed", s, e.ErrorDescription)
		}
	}
}

// testTokenJWT: the token verifies with golang-jwt using only the JWKS and carries the claims.
func testTokenJWT(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	c := r.as(t, inv)
	keys := r.jwks(t)
	jtis := map[string]bool{}
	for _, tc := range []struct {
		scope, wantScope string
		aud              []string
	}{
		{"", "3gpp#aef-a:alpha-one,alpha-three,alpha-two;aef-b:beta-two", []string{aefA, aefB}},
		{"3gpp#aef-b:beta-two", "3gpp#aef-b:beta-two", []string{aefB}},
	} {
		f := grant(inv)
		if tc.scope != "" {
			f.Set("scope", tc.scope)
		}
		start := time.Now()
		resp := c.tokenReq(inv, f)
		wantStatus(t, resp, http.StatusOK)
		tr := decode[capif.AccessTokenRsp](t, resp)
		if tr.TokenType != "Bearer" || tr.ExpiresIn != 600 || tr.Scope != tc.wantScope {
			t.Errorf("token response %+v; want Bearer, 600 s, scope %q", tr, tc.wantScope)
		}
		claims := r.verifyToken(t, keys, tr.AccessToken)
		aud, _ := claims.GetAudience()
		iat, _ := claims.GetIssuedAt()
		exp, _ := claims.GetExpirationTime()
		if claims["iss"] != "https://ccf.test" || claims["sub"] != inv || claims["client_id"] != inv || claims["scope"] != tc.wantScope || !slices.Equal([]string(aud), tc.aud) {
			t.Errorf("claims %v", claims)
		}
		if iat == nil || exp == nil || exp.Sub(iat.Time) != 600*time.Second || iat.Time.Before(start.Add(-2*time.Second)) || iat.Time.After(time.Now().Add(2*time.Second)) {
			t.Errorf("iat %v exp %v: want now and now+600s", iat, exp)
		}
		jti, _ := claims["jti"].(string)
		if jti == "" || jtis[jti] {
			t.Errorf("jti %q missing or repeated", jti)
		}
		jtis[jti] = true
	}
}

// testTokenTTLAndAPIRoot: -token-ttl sets expires_in and exp; -api-root shapes Location and,
// with no -issuer given, iss.
func testTokenTTLAndAPIRoot(t *testing.T, r *runner) {
	r2 := startRunner(t, r.backend, "-token-ttl", "90s", "-api-root", "https://capif.example.com/root/", "-issuer", "")
	inv := r2.freshInvoker(t)
	c := r2.as(t, inv)
	resp := c.create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH")))
	wantStatus(t, resp, http.StatusCreated)
	if got, want := resp.header.Get("Location"), "https://capif.example.com/root/capif-security/v1/trustedInvokers/"+inv; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	resp = c.tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	tr := decode[capif.AccessTokenRsp](t, resp)
	if tr.ExpiresIn != 90 {
		t.Errorf("expires_in %d, want 90", tr.ExpiresIn)
	}
	claims := r2.verifyToken(t, r2.jwks(t), tr.AccessToken)
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if iat == nil || exp == nil || exp.Sub(iat.Time) != 90*time.Second || claims["iss"] != "https://capif.example.com/root" {
		t.Errorf("iss %v, iat %v, exp %v; want the apiRoot and a 90s lifetime", claims["iss"], iat, exp)
	}
}

// TestTokenAlgSwitch: a runner restarted with -token-alg RS256 issues RS256 tokens, publishes
// both keys, and an AEF on aefauth accepts the new tokens and the ES256 ones issued before the
// switch; on every back end (the key set's wrapped keys: a key of RS256 signs from the restart
// on; KMS keys: the RS256 one listed first).
func TestTokenAlgSwitch(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			r := startRunner(t, b)
			inv := r.freshInvoker(t)
			wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
			token := func(r *runner) string {
				resp := r.as(t, inv).tokenReq(inv, grant(inv))
				wantStatus(t, resp, http.StatusOK)
				return decode[capif.AccessTokenRsp](t, resp).AccessToken
			}
			before := token(r)
			extra := []string{"-token-alg", "RS256"}
			if r.cfg.Signer == settings.SignerKMS { // the RSA_2048 key first, the EC key kept listed
				extra = append(extra, "-kms-key-ids", testenv.NewKMSKey(t, "RSA_2048", "")+","+r.cfg.KMSKeyIDs[0])
			}
			r2 := r.restart(t, extra...)
			cert, _ := r.certs.Load(inv) // the same invoker certificate: both tokens are bound to it
			r2.certs.Store(inv, cert)
			after := token(r2)
			alg := func(tok string) string {
				head, _, _ := strings.Cut(tok, ".")
				b, _ := base64.RawURLEncoding.DecodeString(head)
				var h struct{ Alg string }
				_ = json.Unmarshal(b, &h)
				return h.Alg
			}
			if alg(before) != "ES256" || alg(after) != "RS256" {
				t.Fatalf("algorithms %s then %s, want ES256 then RS256", alg(before), alg(after))
			}
			v, err := aefauth.New(aefauth.Config{JWKSURL: r2.url + "/.well-known/jwks.json", Client: r2.as(t, aefA).hc, Issuer: "https://ccf.test", AefID: aefA})
			if err != nil {
				t.Fatal(err)
			}
			for name, tok := range map[string]string{"ES256, issued before the switch": before, "RS256": after} {
				req := httptest.NewRequest(http.MethodGet, "https://aef.test/alpha-one/x", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				leaf := cert.(tls.Certificate).Leaf
				req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
				if _, err := v.For("alpha-one").Verify(t.Context(), req); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}
