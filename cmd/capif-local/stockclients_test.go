package main

// Stock clients that nobody here wrote, used as a new invoker or AEF would use them:
// golang.org/x/oauth2's client credentials flow and a lestrrat-go/jwx verifier that finds the
// keys through the RFC 8414 metadata. They run through the suite's checking RoundTripper, so
// every exchange is also held to the 3GPP contract and the access log.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	jwxjwt "github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/httpapi"
)

// tokenCalls records what reached the token endpoint, to see which authentication style a stock
// client used and how many requests one Token call took.
type tokenCalls struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []tokenCall
}

type tokenCall struct {
	basicUser, basicPass string
	hasBasic             bool
	form                 url.Values
	status               int
}

func (c *tokenCalls) RoundTrip(req *http.Request) (*http.Response, error) {
	var call tokenCall
	call.basicUser, call.basicPass, call.hasBasic = req.BasicAuth()
	if req.Body != nil {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		call.form, _ = url.ParseQuery(buf.String())
		req.Body = readCloser{bytes.NewReader(buf.Bytes())}
	}
	resp, err := c.base.RoundTrip(req)
	if err == nil {
		call.status = resp.StatusCode
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, call)
	c.mu.Unlock()
	return resp, err
}

func (c *tokenCalls) all() []tokenCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// oauth2Client returns the context that makes x/oauth2 use c's certificate-presenting, checking
// http.Client, and the recorder of its token requests.
func oauth2Client(c *client) (context.Context, *tokenCalls) {
	calls := &tokenCalls{base: c.hc.Transport}
	hc := &http.Client{Transport: calls, Timeout: c.hc.Timeout}
	return context.WithValue(context.Background(), oauth2.HTTPClient, hc), calls
}

// testStockOAuth2 runs x/oauth2 clientcredentials, unmodified, with each AuthStyle, for invokers
// with and without an onboarding secret: the first request of each succeeds.
func testStockOAuth2(t *testing.T, r *runner) {
	for _, tc := range []struct {
		name   string
		style  oauth2.AuthStyle
		secret bool
		basic  bool // the request x/oauth2 sends first: HTTP Basic, or the secret in the body
	}{
		{"InHeader", oauth2.AuthStyleInHeader, false, true},
		{"InHeaderSecret", oauth2.AuthStyleInHeader, true, true},
		{"InParams", oauth2.AuthStyleInParams, false, false},
		{"InParamsSecret", oauth2.AuthStyleInParams, true, false},
		{"AutoDetect", oauth2.AuthStyleAutoDetect, false, true},
		{"AutoDetectSecret", oauth2.AuthStyleAutoDetect, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, secret := r.freshInvoker(t), ""
			if tc.secret {
				inv, secret = r.freshSecretInvoker(t)
			}
			oauthContext(t, r, inv)
			ctx, calls := oauth2Client(r.as(t, inv))
			cfg := clientcredentials.Config{ClientID: inv, ClientSecret: secret, TokenURL: r.url + tokenPath(inv), AuthStyle: tc.style}
			tok, err := cfg.Token(ctx)
			if err != nil {
				t.Fatalf("x/oauth2 Token: %v", err)
			}
			got := calls.all()
			if len(got) != 1 || got[0].status != http.StatusOK {
				t.Fatalf("token requests %+v, want one that succeeds", got)
			}
			first := got[0]
			switch {
			case first.hasBasic != tc.basic:
				t.Errorf("sent HTTP Basic %v, want %v", first.hasBasic, tc.basic)
			case tc.basic && (first.basicUser != inv || first.basicPass != secret || first.form.Has("client_secret")):
				t.Errorf("Basic credentials %q:%q, body %v", first.basicUser, first.basicPass, first.form)
			case !tc.basic && (first.form.Get("client_id") != inv || first.form.Get("client_secret") != secret):
				t.Errorf("body %v lacks the client credentials", first.form)
			}
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || !tok.Valid() || time.Until(tok.Expiry) <= 0 {
				t.Errorf("token %+v", tok)
			}
			// The expiry x/oauth2 computed is the token's exp (within the request's duration).
			claims := r.verifyToken(t, r.jwks(t), tok.AccessToken)
			if exp, err := claims.GetExpirationTime(); err != nil || exp.Sub(tok.Expiry).Abs() > 5*time.Second {
				t.Errorf("x/oauth2 expiry %v, token exp %v", tok.Expiry, exp)
			}
		})
	}
	// A wrong secret fails for x/oauth2 as invalid_client, whichever style it tried.
	inv, secret := r.freshSecretInvoker(t)
	oauthContext(t, r, inv)
	ctx, calls := oauth2Client(r.as(t, inv))
	cfg := clientcredentials.Config{ClientID: inv, ClientSecret: "wrong-" + secret, TokenURL: r.url + tokenPath(inv)}
	r.secret(cfg.ClientSecret, "client_secret")
	_, err := cfg.Token(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Errorf("wrong secret: %v, want invalid_client", err)
	}
	for _, c := range calls.all() {
		if c.status != http.StatusUnauthorized {
			t.Errorf("wrong secret answered %d", c.status)
		}
	}
}

// testStockOAuth2Scopes: x/oauth2 sends a Scopes list space-separated; the grant is the union,
// and the response's scope says so.
func testStockOAuth2Scopes(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	ctx, calls := oauth2Client(r.as(t, inv))
	cfg := clientcredentials.Config{
		ClientID: inv, TokenURL: r.url + tokenPath(inv),
		Scopes: []string{"3gpp#aef-a:alpha-two", "3gpp#aef-a:alpha-one;aef-b:beta-two"},
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		t.Fatalf("x/oauth2 Token: %v", err)
	}
	if got := calls.all(); len(got) != 1 || got[0].form.Get("scope") != "3gpp#aef-a:alpha-two 3gpp#aef-a:alpha-one;aef-b:beta-two" {
		t.Fatalf("token requests %+v, want one with both scopes space-separated", got)
	}
	const union = "3gpp#aef-a:alpha-one,alpha-two;aef-b:beta-two"
	if got, _ := tok.Extra("scope").(string); got != union {
		t.Errorf("granted scope %q, want %q", got, union)
	}
	claims := r.verifyToken(t, r.jwks(t), tok.AccessToken)
	if aud, _ := claims.GetAudience(); claims["scope"] != union || !slices.Equal(aud, []string{aefA, aefB}) {
		t.Errorf("token scope %v aud %v", claims["scope"], aud)
	}
	// An element outside the context fails the whole request.
	cfg.Scopes = []string{"3gpp#aef-a:alpha-one", "3gpp#aef-c:gamma-one"}
	var re *oauth2.RetrieveError
	if _, err := cfg.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Errorf("scope outside the context: %v, want invalid_scope", err)
	}
}

// metadataDoc fetches the RFC 8414 document the way a client does: anonymously, at the path.
func metadataDoc(t testing.TB, r *runner, path string) httpapi.Metadata {
	t.Helper()
	resp := r.anonymous(t).send(http.MethodGet, path, "", nil)
	wantStatus(t, resp, http.StatusOK)
	return decode[httpapi.Metadata](t, resp)
}

// testStockJWXVerifier: an AEF's verifier built from lestrrat-go/jwx alone finds the JWKS
// through the metadata document's jwks_uri and verifies a token the runner issued: ES256, typ
// at+jwt, iss equal to the metadata's issuer, and cnf.x5t#S256 equal to what openssl computes
// from the invoker's certificate.
func testStockJWXVerifier(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	owner := r.as(t, inv)
	resp := owner.tokenReq(inv, grant(inv, "scope", "3gpp#aef-b:beta-two"))
	wantStatus(t, resp, http.StatusOK)
	token := decode[struct {
		AccessToken string `json:"access_token"`
	}](t, resp).AccessToken

	md := metadataDoc(t, r, httpapi.MetadataPath)
	if want := r.url + "/.well-known/jwks.json"; md.JWKSURI != want {
		t.Errorf("jwks_uri %q, want %q", md.JWKSURI, want)
	}
	if !md.TLSClientCertificateBoundAccessTokens || !slices.Equal(md.GrantTypesSupported, []string{"client_credentials"}) {
		t.Errorf("metadata %+v", md)
	}
	// The verifier fetches the keys over the suite's checking client (the JWKS is public).
	set, err := jwk.Fetch(context.Background(), md.JWKSURI, jwk.WithHTTPClient(r.anonymous(t).hc))
	if err != nil {
		t.Fatalf("jwk.Fetch %s: %v", md.JWKSURI, err)
	}
	tok, err := jwxjwt.Parse([]byte(token), jwxjwt.WithKeySet(set), jwxjwt.WithIssuer(md.Issuer),
		jwxjwt.WithAudience(aefB), jwxjwt.WithAcceptableSkew(30*time.Second), jwxjwt.WithValidate(true))
	if err != nil {
		t.Fatalf("jwx does not verify the token with the discovered JWKS: %v", err)
	}
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		t.Fatalf("jws.Parse: %v", err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if typ, _ := h.Type(); typ != "at+jwt" {
		t.Errorf("typ %q, want at+jwt", typ)
	}
	if alg, _ := h.Algorithm(); alg.String() != "ES256" {
		t.Errorf("alg %v, want ES256", alg)
	}
	var cnf map[string]any
	if err := tok.Get("cnf", &cnf); err != nil {
		t.Fatalf("no cnf claim: %v", err)
	}
	if got, want := cnf["x5t#S256"], opensslThumbprint(t, r, inv); got != want {
		t.Errorf("cnf.x5t#S256 %v, want %q (openssl)", got, want)
	}

	// The same verifier refuses a token whose signature is not the CCF's.
	parts := strings.Split(token, ".")
	other := decode[struct {
		AccessToken string `json:"access_token"`
	}](t, owner.tokenReq(inv, grant(inv))).AccessToken
	forged := parts[0] + "." + parts[1] + "." + strings.Split(other, ".")[2]
	if _, err := jxtVerify(set, md.Issuer, forged); err == nil {
		t.Error("jwx accepted a token with another token's signature")
	}
	// And one verified against an issuer other than the metadata's.
	if _, err := jxtVerify(set, md.Issuer+"x", token); err == nil {
		t.Error("jwx accepted a token for another issuer")
	}
}

func jxtVerify(set jwk.Set, issuer, token string) (jwxjwt.Token, error) {
	return jwxjwt.Parse([]byte(token), jwxjwt.WithKeySet(set), jwxjwt.WithIssuer(issuer), jwxjwt.WithValidate(true))
}

// opensslThumbprint computes the RFC 8705 thumbprint of id's client certificate with the tools
// an operator would use, independently of the Go code under test.
func opensslThumbprint(t testing.TB, r *runner, id string) string {
	t.Helper()
	for _, tool := range []string{"openssl", "basenc", "tr", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool, "install openssl and coreutils (basenc)")
		}
	}
	r.as(t, id) // issues the certificate if it was not yet
	v, _ := r.certs.Load(id)
	der := v.(tls.Certificate).Certificate[0]
	cmd := exec.Command("sh", "-c", "openssl x509 -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d '='")
	cmd.Stdin = bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl thumbprint: %v: %s", err, stderr.String())
	}
	thumb := strings.TrimSpace(string(out))
	if len(thumb) != 43 { // 32 bytes, base64url without padding
		t.Fatalf("openssl thumbprint %q is not 43 characters", thumb)
	}
	return thumb
}

// testMetadataPathForm: with an {apiRoot} that has a path, the document is also served at the
// RFC 8414 §3.1 path form, identical, and its issuer is the iss of the tokens.
func testMetadataPathForm(t *testing.T, r *runner) {
	r2 := startRunner(t, r.backend, "-api-root", "https://capif.example.com/root/")
	plain, pathForm := metadataDoc(t, r2, httpapi.MetadataPath), metadataDoc(t, r2, httpapi.MetadataPath+"/root")
	if !equalJSON(t, plain, pathForm) {
		t.Errorf("the two forms differ: %+v and %+v", plain, pathForm)
	}
	if plain.JWKSURI != "https://capif.example.com/root/.well-known/jwks.json" {
		t.Errorf("jwks_uri %q", plain.JWKSURI)
	}
	wantProblem(t, r2.anonymous(t).send(http.MethodGet, httpapi.MetadataPath+"/elsewhere", "", nil), http.StatusNotFound)
	inv := r2.freshInvoker(t)
	oauthContext(t, r2, inv)
	resp := r2.as(t, inv).tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	claims := r2.verifyToken(t, r2.jwks(t), decode[struct {
		AccessToken string `json:"access_token"`
	}](t, resp).AccessToken)
	if claims["iss"] != plain.Issuer {
		t.Errorf("token iss %v, metadata issuer %q", claims["iss"], plain.Issuer)
	}
}
