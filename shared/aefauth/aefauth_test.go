package aefauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/signer"
)

// keySigner lets signer.Key (the common code path of every project signer) sign with any key
// and any kid, so that forgeries differ from real tokens in exactly one respect.
type keySigner struct{ key *ecdsa.PrivateKey }

func (k keySigner) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, k.key, d)
}

// forge signs c with key under kid.
func forge(ctx context.Context, key *ecdsa.PrivateKey, kid string, c capif.TokenClaims) (string, error) {
	k, err := signer.NewKey(capif.ES256, keySigner{key}, kid)
	if err != nil {
		return "", err
	}
	return k.Sign(ctx, c)
}

func b64(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// handCrafted signs header.payload with a golang-jwt method, for the headers our signers never
// produce (other typ, other alg).
func handCrafted(t *testing.T, header map[string]any, cl any, m jwt.SigningMethod, key any) string {
	t.Helper()
	input := b64(header) + "." + b64(cl)
	sig, err := m.Sign(input, key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerify(t *testing.T) {
	c := newCCF(t)
	kid := c.signer.KeyID()
	good := c.token(t, c.claims())
	with := func(mutate func(*capif.TokenClaims)) string {
		cl := c.claims()
		mutate(&cl)
		return c.token(t, cl)
	}
	otherKey, _ := newKey(t)
	forged, err := forge(t.Context(), otherKey, kid, c.claims())
	if err != nil {
		t.Fatal(err)
	}
	// The good token's signature over a payload that widens the scope.
	widened := c.claims()
	widened.Scope = "3gpp#aef-1:monitoring-event,everything"
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64(widened) + "." + parts[2]
	unknownKid, err := forge(t.Context(), otherKey, "kid-nobody-published", c.claims())
	if err != nil {
		t.Fatal(err)
	}
	jwkJSON, _ := json.Marshal(c.jwks.Load().Keys[0])
	pemPub := c.ca.PEM // any public bytes an attacker could find would do; try the JWK too
	hsJWK := handCrafted(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}, c.claims(), jwt.SigningMethodHS256, jwkJSON)
	hsPEM := handCrafted(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}, c.claims(), jwt.SigningMethodHS256, pemPub)
	none := b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + b64(c.claims()) + "."
	typJWT := handCrafted(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": kid}, c.claims(), jwt.SigningMethodES256, c.key)
	noTyp := handCrafted(t, map[string]any{"alg": "ES256", "kid": kid}, c.claims(), jwt.SigningMethodES256, c.key)
	noKid := handCrafted(t, map[string]any{"alg": "ES256", "typ": "at+jwt"}, c.claims(), jwt.SigningMethodES256, c.key)
	mediaTyp := handCrafted(t, map[string]any{"alg": "ES256", "typ": "application/at+jwt", "kid": kid}, c.claims(), jwt.SigningMethodES256, c.key)
	noIat := handCrafted(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": kid},
		func() map[string]any {
			var m map[string]any
			raw, _ := json.Marshal(c.claims())
			_ = json.Unmarshal(raw, &m)
			delete(m, "iat")
			return m
		}(), jwt.SigningMethodES256, c.key)
	now := c.clock.Now().Unix()

	tests := []struct {
		name    string
		req     *http.Request
		cfg     func(*aefauth.Config)
		status  int
		code    string // RFC 6750 error code, "" for none
		apis    []string
		wwwAuth string // a fragment the challenge must contain
	}{
		{name: "good", req: request(good, c.invokerA), status: 200, apis: []string{apiName}},
		{name: "typ application/at+jwt", req: request(mediaTyp, c.invokerA), status: 200},
		{name: "forged: another key under the CCF's kid", req: request(forged, c.invokerA), status: 401, code: "invalid_token"},
		{name: "forged: payload changed under a real signature", req: request(tampered, c.invokerA), status: 401, code: "invalid_token"},
		{name: "expired beyond the leeway", req: request(with(func(cl *capif.TokenClaims) { cl.Expiry = now - 31 }), c.invokerA), status: 401, code: "invalid_token", wwwAuth: "expired"},
		{name: "expired within the 30 s leeway", req: request(with(func(cl *capif.TokenClaims) { cl.Expiry = now - 25 }), c.invokerA), status: 200},
		{name: "no exp", req: request(with(func(cl *capif.TokenClaims) { cl.Expiry = 0 }), c.invokerA), status: 401, code: "invalid_token"},
		{name: "issued in the future beyond the leeway", req: request(with(func(cl *capif.TokenClaims) { cl.IssuedAt = now + 31 }), c.invokerA), status: 401, code: "invalid_token"},
		{name: "issued in the future within the leeway", req: request(with(func(cl *capif.TokenClaims) { cl.IssuedAt = now + 25 }), c.invokerA), status: 200},
		{name: "no iat", req: request(noIat, c.invokerA), status: 401, code: "invalid_token"},
		{name: "older than MaxTokenAge", req: request(with(func(cl *capif.TokenClaims) { cl.IssuedAt = now - 120 }), c.invokerA),
			cfg: func(cfg *aefauth.Config) { cfg.MaxTokenAge = time.Minute }, status: 401, code: "invalid_token", wwwAuth: "older"},
		{name: "younger than MaxTokenAge", req: request(with(func(cl *capif.TokenClaims) { cl.IssuedAt, cl.Expiry = now-50, now+550 }), c.invokerA),
			cfg: func(cfg *aefauth.Config) { cfg.MaxTokenAge = time.Minute }, status: 200},
		{name: "wrong audience", req: request(with(func(cl *capif.TokenClaims) { cl.Audience = []string{"aef-2"} }), c.invokerA), status: 401, code: "invalid_token", wwwAuth: "aud"},
		{name: "audience among several", req: request(with(func(cl *capif.TokenClaims) { cl.Audience = []string{"aef-2", aefID} }), c.invokerA), status: 200},
		{name: "wrong issuer", req: request(with(func(cl *capif.TokenClaims) { cl.Issuer = "https://evil.test" }), c.invokerA), status: 401, code: "invalid_token", wwwAuth: "iss"},
		{name: "wrong scope: another API", req: request(with(func(cl *capif.TokenClaims) { cl.Scope = "3gpp#aef-1:qos-session" }), c.invokerA),
			status: 403, code: "insufficient_scope", wwwAuth: `scope="3gpp#aef-1:monitoring-event"`},
		{name: "wrong scope: the API at another AEF", req: request(with(func(cl *capif.TokenClaims) { cl.Scope = "3gpp#aef-2:monitoring-event;aef-1:qos-session" }), c.invokerA), status: 403, code: "insufficient_scope"},
		{name: "scope: several groups", req: request(with(func(cl *capif.TokenClaims) { cl.Scope = "3gpp#aef-2:x;aef-1:qos-session,monitoring-event" }), c.invokerA),
			status: 200, apis: []string{"qos-session", "monitoring-event"}},
		{name: "scope: several space-separated elements", req: request(with(func(cl *capif.TokenClaims) {
			cl.Scope = "3gpp#aef-1:qos-session 3gpp#aef-2:y 3gpp#aef-1:monitoring-event"
		}), c.invokerA),
			status: 200, apis: []string{"qos-session", "monitoring-event"}},
		{name: "scope malformed", req: request(with(func(cl *capif.TokenClaims) { cl.Scope = "3gpp#aef-1:monitoring-event  3gpp#" }), c.invokerA), status: 401, code: "invalid_token"},
		{name: "wrong cnf: replayed from another certificate", req: request(good, c.invokerB), status: 401, code: "invalid_token", wwwAuth: "another certificate"},
		{name: "bound token on a connection without a client certificate", req: request(good, nil), status: 401, code: "invalid_token"},
		{name: "bound token over plain HTTP", req: func() *http.Request { r := request(good, nil); r.TLS = nil; return r }(), status: 401, code: "invalid_token"},
		{name: "unverified client certificate", req: func() *http.Request { r := request(good, c.invokerA); r.TLS.VerifiedChains = nil; return r }(), status: 401, code: "invalid_token"},
		{name: "token without cnf", req: request(with(func(cl *capif.TokenClaims) { cl.Confirmation = nil }), c.invokerA), status: 401, code: "invalid_token", wwwAuth: "cnf"},
		{name: "binding off: no certificate", req: request(good, nil), cfg: func(cfg *aefauth.Config) { cfg.SkipCertificateBinding = true }, status: 200},
		{name: "binding off: token without cnf", req: request(with(func(cl *capif.TokenClaims) { cl.Confirmation = nil }), nil),
			cfg: func(cfg *aefauth.Config) { cfg.SkipCertificateBinding = true }, status: 200},
		{name: "unknown kid", req: request(unknownKid, c.invokerA), status: 401, code: "invalid_token", wwwAuth: "kid"},
		{name: "no kid", req: request(noKid, c.invokerA), status: 401, code: "invalid_token"},
		{name: "alg none", req: request(none, c.invokerA), status: 401, code: "invalid_token"},
		{name: "HS256 keyed with the public JWK", req: request(hsJWK, c.invokerA), status: 401, code: "invalid_token"},
		{name: "HS256 keyed with public PEM", req: request(hsPEM, c.invokerA), status: 401, code: "invalid_token"},
		{name: "typ JWT", req: request(typJWT, c.invokerA), status: 401, code: "invalid_token", wwwAuth: "typ"},
		{name: "no typ", req: request(noTyp, c.invokerA), status: 401, code: "invalid_token"},
		{name: "truncated signature", req: request(good[:len(good)-10], c.invokerA), status: 401, code: "invalid_token"},
		{name: "truncated to two segments", req: request(parts[0]+"."+parts[1], c.invokerA), status: 401, code: "invalid_token"},
		{name: "truncated mid-payload", req: request(good[:len(parts[0])+9], c.invokerA), status: 401, code: "invalid_token"},
		{name: "not b64token", req: request("a b", c.invokerA), status: 401, code: "invalid_token"},
		{name: "no Authorization", req: request("", c.invokerA), status: 401, wwwAuth: `Bearer realm="aef-1"`},
		{name: "Basic scheme", req: func() *http.Request {
			r := request("", c.invokerA)
			r.Header.Set("Authorization", "Basic aW52OnM=")
			return r
		}(), status: 401},
		{name: "lower-case scheme", req: func() *http.Request {
			r := request("", c.invokerA)
			r.Header.Set("Authorization", "bearer "+good)
			return r
		}(), status: 200},
		{name: "two Authorization headers", req: func() *http.Request {
			r := request(good, c.invokerA)
			r.Header.Add("Authorization", "Bearer "+good)
			return r
		}(), status: 400, code: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := c.verifier(t, tc.cfg)
			var seen *aefauth.Claims
			h := v.For(apiName).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen, _ = aefauth.ClaimsFrom(r.Context())
				w.WriteHeader(200)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d (WWW-Authenticate: %s)", rec.Code, tc.status, rec.Header().Get("WWW-Authenticate"))
			}
			challenge := rec.Header().Get("WWW-Authenticate")
			if tc.status == 200 {
				if seen == nil || seen.Subject != "invoker-1" {
					t.Fatalf("handler saw claims %+v", seen)
				}
				if tc.apis != nil && strings.Join(seen.APIs, ",") != strings.Join(tc.apis, ",") {
					t.Errorf("APIs = %v, want %v", seen.APIs, tc.apis)
				}
				return
			}
			if seen != nil {
				t.Fatal("the handler ran for a refused request")
			}
			if !strings.HasPrefix(challenge, "Bearer") {
				t.Fatalf("WWW-Authenticate = %q, want a Bearer challenge", challenge)
			}
			if tc.code == "" && strings.Contains(challenge, "error=") {
				t.Errorf("WWW-Authenticate = %q, want no error code", challenge)
			}
			if tc.code != "" && !strings.Contains(challenge, `error="`+tc.code+`"`) {
				t.Errorf("WWW-Authenticate = %q, want error %q", challenge, tc.code)
			}
			if !strings.Contains(challenge, tc.wwwAuth) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", challenge, tc.wwwAuth)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != tc.code {
				t.Errorf("body %q (%v), want error %q", rec.Body, err, tc.code)
			}
			if strings.Contains(challenge+rec.Body.String(), parts[2]) {
				t.Error("the answer echoes the token")
			}
		})
	}
}

// Verify answers with an *Error whose fields are the RFC 6750 answer.
func TestVerifyError(t *testing.T) {
	c := newCCF(t)
	_, err := c.verifier(t, nil).For("qos-session").Verify(t.Context(), request(c.token(t, c.claims()), c.invokerA))
	var e *aefauth.Error
	if !errors.As(err, &e) || e.Status != 403 || e.Code != aefauth.CodeInsufficientScope || e.Scope != "3gpp#aef-1:qos-session" {
		t.Fatalf("err = %#v", err)
	}
}

// The thumbprint is RFC 8705's x5t#S256: base64url without padding of SHA-256 over the DER, as
// `openssl x509 -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d =` gives.
func TestCertThumbprint(t *testing.T) {
	// SHA-256 of the empty input, a published vector.
	if got := capif.CertThumbprint(nil); got != "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" {
		t.Errorf("CertThumbprint(empty) = %s", got)
	}
	ca, _ := devpki.NewCA("t")
	sum := sha256.Sum256(ca.Cert.Raw)
	if got, want := capif.CertThumbprint(ca.Cert.Raw), base64.RawURLEncoding.EncodeToString(sum[:]); got != want || strings.ContainsAny(got, "=+/") {
		t.Errorf("CertThumbprint = %s, want %s", got, want)
	}
}

// A new key published first in the JWKS is picked up on its first token, without a restart; the
// old key keeps verifying while it is published, and stops once it is withdrawn and the cached
// set has aged out.
func TestKeyRotation(t *testing.T) {
	c := newCCF(t)
	v := c.verifier(t, nil).For(apiName)
	oldToken := c.token(t, c.claims())
	if _, err := v.Verify(t.Context(), request(oldToken, c.invokerA)); err != nil {
		t.Fatalf("old key: %v", err)
	}
	_, next := newKey(t)
	oldSet := *c.jwks.Load()
	nextSet, _ := next.JWKS(t.Context())
	rotated := capif.JWKSet{Keys: append(nextSet.Keys, oldSet.Keys...)}
	c.jwks.Store(&rotated)
	c.clock.Add(aefauth.DefaultRefetchInterval)
	cl := c.claims()
	newToken, err := next.Sign(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	// The first tokens of the new key arrive together: one fetches, the others wait for it
	// rather than being refused.
	c.delay.Store(int64(50 * time.Millisecond))
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), request(newToken, c.invokerA)); err != nil {
				t.Errorf("new key after rotation: %v", err)
			}
		})
	}
	wg.Wait()
	c.delay.Store(0)
	if _, err := v.Verify(t.Context(), request(oldToken, c.invokerA)); err != nil {
		t.Fatalf("old key after rotation: %v", err)
	}
	if got := c.hits.Load(); got != 2 {
		t.Errorf("%d JWKS fetches, want 2", got)
	}
	// Withdraw the old key; once the cached set is older than JWKSMaxAge it is fetched again.
	c.jwks.Store(&nextSet)
	c.clock.Add(aefauth.DefaultJWKSMaxAge)
	oldToken = c.token(t, c.claims()) // fresh claims, so only the key is at fault
	if _, err := v.Verify(t.Context(), request(oldToken, c.invokerA)); err == nil {
		t.Fatal("a withdrawn key still verifies")
	}
	if _, err := v.Verify(t.Context(), request(c.tokenWith(t, next, c.claims()), c.invokerA)); err != nil {
		t.Fatalf("current key: %v", err)
	}
}

func (c *ccf) tokenWith(t testing.TB, s interface {
	Sign(context.Context, capif.TokenClaims) (string, error)
}, cl capif.TokenClaims) string {
	t.Helper()
	tok, err := s.Sign(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A flood of tokens with unknown kids costs the CCF one fetch per RefetchInterval, however many
// arrive and however concurrently.
func TestJWKSRefetchLimit(t *testing.T) {
	c := newCCF(t)
	v := c.verifier(t, func(cfg *aefauth.Config) { cfg.RefetchInterval = 10 * time.Second }).For(apiName)
	good := c.token(t, c.claims())
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := newKey(t)
	flood := func() {
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				tok, err := forge(context.Background(), otherKey, "made-up-"+string(rune('a'+i%26)), c.claims())
				if err != nil {
					t.Error(err)
					return
				}
				_, err = v.Verify(context.Background(), request(tok, c.invokerA))
				var e *aefauth.Error
				if !errors.As(err, &e) || e.Status != 401 || e.Code != aefauth.CodeInvalidToken {
					t.Errorf("unknown kid: %v, want 401 invalid_token", err)
				}
			})
		}
		wg.Wait()
	}
	flood()
	if got := c.hits.Load(); got != 1 {
		t.Fatalf("%d JWKS fetches within the interval, want 1", got)
	}
	c.clock.Add(9 * time.Second)
	flood()
	if got := c.hits.Load(); got != 1 {
		t.Fatalf("%d JWKS fetches within the interval, want 1", got)
	}
	c.clock.Add(time.Second)
	flood()
	if got := c.hits.Load(); got != 2 {
		t.Fatalf("%d JWKS fetches after the interval, want 2", got)
	}
	// Known keys never wait for or cause a fetch.
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); err != nil || c.hits.Load() != 2 {
		t.Fatalf("good token: %v, %d fetches", err, c.hits.Load())
	}
}

// Before any JWKS could be fetched the answer is 503, not a verdict on the token; afterwards a
// failing CCF leaves the cached keys in use.
func TestJWKSUnavailable(t *testing.T) {
	c := newCCF(t)
	v := c.verifier(t, nil).For(apiName)
	good := c.token(t, c.claims())
	c.failing.Store(true)
	_, err := v.Verify(t.Context(), request(good, c.invokerA))
	var e *aefauth.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("CCF down: %v, want 503", err)
	}
	rec := httptest.NewRecorder()
	aefauth.WriteError(rec, aefID, err)
	if rec.Code != 503 || rec.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("503 answer: %d, WWW-Authenticate %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	c.failing.Store(false)
	c.clock.Add(aefauth.DefaultRefetchInterval)
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); err != nil {
		t.Fatalf("CCF back: %v", err)
	}
	c.failing.Store(true)
	c.clock.Add(aefauth.DefaultJWKSMaxAge)
	good = c.token(t, c.claims())
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); err != nil {
		t.Fatalf("CCF down again, cached keys: %v", err)
	}
	// The cached set serves for JWKSMaxStale past its max age, and no longer.
	c.clock.Add(aefauth.DefaultJWKSMaxStale - aefauth.DefaultJWKSMaxAge - time.Minute)
	good = c.token(t, c.claims())
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); err != nil {
		t.Fatalf("CCF down, set just within JWKSMaxStale: %v", err)
	}
	c.clock.Add(aefauth.DefaultJWKSMaxAge + time.Minute)
	good = c.token(t, c.claims())
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("CCF down past JWKSMaxStale: %v, want 503", err)
	}
	c.failing.Store(false)
	c.clock.Add(aefauth.DefaultRefetchInterval)
	if _, err := v.Verify(t.Context(), request(good, c.invokerA)); err != nil {
		t.Fatalf("CCF back after a long outage: %v", err)
	}
}

// The JWKS is fetched over mutual TLS: without the AEF's certificate the CCF's server refuses the
// handshake and no key is ever trusted.
func TestJWKSNeedsTheAEFCertificate(t *testing.T) {
	c := newCCF(t)
	v := c.verifier(t, func(cfg *aefauth.Config) {
		cfg.Client = aefauth.MTLSClient(tls.Certificate{}, c.ca.Pool())
	}).For(apiName)
	_, err := v.Verify(t.Context(), request(c.token(t, c.claims()), c.invokerA))
	var e *aefauth.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("no client certificate: %v, want 503", err)
	}
}

func TestNewRefuses(t *testing.T) {
	c := newCCF(t)
	good := aefauth.Config{JWKSURL: c.jwksURL(), Client: http.DefaultClient, Issuer: issuer, AefID: aefID}
	for name, mutate := range map[string]func(*aefauth.Config){
		"http JWKS":      func(cfg *aefauth.Config) { cfg.JWKSURL = "http://ccf.test/jwks" },
		"no JWKS":        func(cfg *aefauth.Config) { cfg.JWKSURL = "" },
		"no client":      func(cfg *aefauth.Config) { cfg.Client = nil },
		"no issuer":      func(cfg *aefauth.Config) { cfg.Issuer = "" },
		"no aefId":       func(cfg *aefauth.Config) { cfg.AefID = "" },
		"negative age":   func(cfg *aefauth.Config) { cfg.MaxTokenAge = -time.Second },
		"negative retry": func(cfg *aefauth.Config) { cfg.RefetchInterval = -time.Second },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := aefauth.New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := aefauth.New(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}
