package aefauth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/signer"
	"github.com/capifcore/capif-security/shared/signer/local"
)

// rsaJWK is the JWK of pub under kid with e as given (to publish keys the verifier must skip).
func rsaJWK(pub *rsa.PublicKey, kid string, e []byte) capif.JWK {
	return capif.JWK{Kty: "RSA", N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()), E: base64.RawURLEncoding.EncodeToString(e),
		Kid: kid, Alg: capif.RS256, Use: "sig"}
}

// TestRS256 (RFC 9068 §2.1): RS256 tokens of an RSA 2048 key are accepted beside ES256 ones,
// the key is chosen by kid alone and its algorithm must be the token's, weak RSA keys are
// skipped, HMAC keyed with the public key, PS256 and none are refused, a JWKS of RSA keys only
// works, and the deny list and MaxTokenLifetime apply unchanged.
func TestRS256(t *testing.T) {
	c := newCCF(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := local.New(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaKid, ecKid := rs.KeyID(), c.signer.KeyID()
	rsJWKS, _ := rs.JWKS(t.Context())
	ecJWKS := *c.jwks.Load()
	both := capif.JWKSet{Keys: append(append([]capif.JWK{}, ecJWKS.Keys...), rsJWKS.Keys...)}
	both.Keys = append(both.Keys, rsaJWK(&weak.PublicKey, "weak-1024", []byte{1, 0, 1}), rsaJWK(&rsaKey.PublicKey, "e-3", []byte{3}))
	c.jwks.Store(&both)

	good := c.tokenWith(t, rs, c.claims())
	hdr := func(alg, kid string) map[string]any {
		h := map[string]any{"alg": alg, "typ": "at+jwt"}
		if kid != "" {
			h["kid"] = kid
		}
		return h
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"RS256 of the RSA 2048 key", good, true},
		{"ES256 of the EC key, beside it", c.token(t, c.claims()), true},
		{"HS256 keyed with the RSA modulus", handCrafted(t, hdr("HS256", rsaKid), c.claims(), jwt.SigningMethodHS256, rsaKey.N.Bytes()), false},
		{"HS256 keyed with the RSA key's DER", handCrafted(t, hdr("HS256", rsaKid), c.claims(), jwt.SigningMethodHS256, der), false},
		{"HS256 keyed with the RSA key's PEM", handCrafted(t, hdr("HS256", rsaKid), c.claims(), jwt.SigningMethodHS256, pemPub), false},
		{"RS256 under the EC key's kid", handCrafted(t, hdr("RS256", ecKid), c.claims(), jwt.SigningMethodRS256, rsaKey), false},
		{"ES256 under the RSA key's kid", handCrafted(t, hdr("ES256", rsaKid), c.claims(), jwt.SigningMethodES256, c.key), false},
		{"PS256", handCrafted(t, hdr("PS256", rsaKid), c.claims(), jwt.SigningMethodPS256, rsaKey), false},
		{"none", b64(hdr("none", rsaKid)) + "." + b64(c.claims()) + ".", false},
		{"RS256 without kid", handCrafted(t, hdr("RS256", ""), c.claims(), jwt.SigningMethodRS256, rsaKey), false},
		{"the kid of a 1024-bit RSA key in the JWKS", handCrafted(t, hdr("RS256", "weak-1024"), c.claims(), jwt.SigningMethodRS256, weak), false},
		{"the kid of an RSA key with e = 3 in the JWKS", handCrafted(t, hdr("RS256", "e-3"), c.claims(), jwt.SigningMethodRS256, rsaKey), false},
	}
	v := c.verifier(t, nil).For(apiName)
	for _, tc := range tests {
		_, err := v.Verify(t.Context(), request(tc.token, c.invokerA))
		var e *aefauth.Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && (!errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Code != aefauth.CodeInvalidToken):
			t.Errorf("%s: %v, want 401 invalid_token", tc.name, err)
		}
	}

	// A JWKS of RSA keys only is a valid set.
	c.jwks.Store(&rsJWKS)
	if _, err := c.verifier(t, nil).For(apiName).Verify(t.Context(), request(good, c.invokerA)); err != nil {
		t.Errorf("a JWKS of RSA keys only: %v", err)
	}

	// The deny list and MaxTokenLifetime apply to RS256 unchanged.
	e := newSecurityEnv(t, aefauth.NewMemoryList())
	e.jwks.Store(&rsJWKS)
	before := e.claims()
	before.IssuedAt, before.Expiry = e.clock.Now().Add(-time.Minute).Unix(), e.clock.Now().Add(9*time.Minute).Unix()
	old := e.tokenWith(t, rs, before)
	if _, err := e.v.For(apiName).Verify(t.Context(), request(old, e.invokerA)); err != nil {
		t.Fatal(err)
	}
	e.push(t, "invoker-1", "n-rs", apiID)
	if _, err := e.v.For(apiName).Verify(t.Context(), request(old, e.invokerA)); !revokedErr(err) {
		t.Errorf("a revoked RS256 token: %v", err)
	}
	long := e.claims()
	long.Expiry = long.IssuedAt + int64((aefauth.DefaultMaxTokenLifetime + time.Second).Seconds())
	if _, err := e.v.For(apiName).Verify(t.Context(), request(e.tokenWith(t, rs, long), e.invokerA)); err == nil || !strings.Contains(err.Error(), "lives longer") {
		t.Errorf("an RS256 token living longer than MaxTokenLifetime: %v", err)
	}
	if signer.AlgOf(&weak.PublicKey) != "" {
		t.Error("a 1024-bit key counts as RS256")
	}
}

// BenchmarkVerify is one Verify of a cached key's token, for each algorithm.
func BenchmarkVerify(b *testing.B) {
	c := newCCF(b)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	rs, err := local.New(rsaKey)
	if err != nil {
		b.Fatal(err)
	}
	rsJWKS, _ := rs.JWKS(b.Context())
	set := *c.jwks.Load()
	set.Keys = append(set.Keys, rsJWKS.Keys...)
	c.jwks.Store(&set)
	api := c.verifier(b, nil).For(apiName)
	for alg, tok := range map[string]string{capif.ES256: c.token(b, c.claims()), capif.RS256: c.tokenWith(b, rs, c.claims())} {
		b.Run(alg, func(b *testing.B) {
			r := request(tok, c.invokerA)
			if _, err := api.Verify(b.Context(), r); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := api.Verify(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
