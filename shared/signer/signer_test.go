package signer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/signer/signertest"
)

// memKey signs with an in-memory key and records what it was asked.
type memKey struct {
	key    *ecdsa.PrivateKey
	digest []byte
	ctx    context.Context
}

func (m *memKey) SignDigest(ctx context.Context, digest []byte) ([]byte, error) {
	m.ctx, m.digest = ctx, append([]byte(nil), digest...)
	return ecdsa.SignASN1(rand.Reader, m.key, digest)
}

type failingKey struct{ err error }

func (f failingKey) SignDigest(context.Context, []byte) ([]byte, error) { return nil, f.err }

func newMemKey(t *testing.T) *memKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &memKey{key: k}
}

func sampleClaims() capif.TokenClaims {
	now := time.Now().Unix()
	return capif.TokenClaims{
		Issuer:   "https://ccf.example",
		Subject:  "inv-1",
		ClientID: "inv-1",
		Audience: []string{"aef-1"},
		Scope:    "3gpp#aef-1:api-a",
		IssuedAt: now,
		Expiry:   now + 600,
		ID:       "jti-1",
		Confirmation: &capif.Confirmation{
			X5tS256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2",
		},
	}
}

func segment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

type ctxKey struct{}

// sign is NewKey and Key.Sign in one.
func sign(ctx context.Context, d DigestSigner, kid string, c capif.TokenClaims) (string, error) {
	k, err := NewKey(capif.ES256, d, kid)
	if err != nil {
		return "", err
	}
	return k.Sign(ctx, c)
}

func TestSignVerifiesWithStockGolangJWT(t *testing.T) {
	mk := newMemKey(t)
	jwk, err := JWK(&mk.key.PublicKey, "kid-1")
	if err != nil {
		t.Fatal(err)
	}
	c := sampleClaims()
	ctx := context.WithValue(t.Context(), ctxKey{}, "request")
	token, err := sign(ctx, mk, "kid-1", c)
	if err != nil {
		t.Fatal(err)
	}

	// The key got the request's context and the SHA-256 of the JWS signing input.
	if mk.ctx == nil || mk.ctx.Value(ctxKey{}) != "request" {
		t.Error("the request context did not reach the key")
	}
	signingInput := token[:strings.LastIndex(token, ".")]
	if want := sha256.Sum256([]byte(signingInput)); !bytes.Equal(mk.digest, want[:]) {
		t.Error("the key was not asked to sign SHA-256(signing input)")
	}

	tok, got, err := signertest.Parse(token, capif.JWKSet{Keys: []capif.JWK{jwk}})
	if err != nil {
		t.Fatalf("stock verification failed: %v", err)
	}
	if tok.Header["kid"] != "kid-1" || tok.Header["alg"] != "ES256" || tok.Header["typ"] != "at+jwt" {
		t.Errorf("header = %v", tok.Header)
	}
	want := map[string]any{
		"iss": c.Issuer, "sub": c.Subject, "client_id": c.ClientID, "aud": []any{"aef-1"},
		"scope": c.Scope, "iat": float64(c.IssuedAt), "exp": float64(c.Expiry), "jti": c.ID,
		"cnf": map[string]any{"x5t#S256": c.Confirmation.X5tS256},
	}
	if !reflect.DeepEqual(map[string]any(got), want) {
		t.Errorf("claims = %v\nwant     %v", got, want)
	}
}

func TestSignClaimsAndHeader(t *testing.T) {
	mk := newMemKey(t)
	c := sampleClaims()
	c.Audience = []string{"aef-1", "aef-2"}
	token, err := sign(t.Context(), mk, "k", c)
	if err != nil {
		t.Fatal(err)
	}
	header := segment(t, token, 0)
	if !reflect.DeepEqual(header, map[string]any{"alg": "ES256", "kid": "k", "typ": "at+jwt"}) {
		t.Errorf("header = %v", header)
	}
	payload := segment(t, token, 1)
	if !reflect.DeepEqual(payload["aud"], []any{"aef-1", "aef-2"}) {
		t.Errorf("aud = %v", payload["aud"])
	}
	// The signature segment is the 64-byte R‖S form, not DER.
	sig, err := base64.RawURLEncoding.DecodeString(token[strings.LastIndex(token, ".")+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature is %d bytes (%v), want 64", len(sig), err)
	}
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	digest := sha256.Sum256([]byte(token[:strings.LastIndex(token, ".")]))
	if !ecdsa.Verify(&mk.key.PublicKey, digest[:], r, s) {
		t.Error("R‖S does not verify")
	}
}

// A token bound to no certificate carries no cnf at all, rather than an empty one that a
// verifier might compare against an empty thumbprint.
func TestSignWithoutConfirmationOmitsCnf(t *testing.T) {
	c := sampleClaims()
	c.Confirmation = nil
	token, err := sign(t.Context(), newMemKey(t), "k", c)
	if err != nil {
		t.Fatal(err)
	}
	if cnf, ok := segment(t, token, 1)["cnf"]; ok {
		t.Errorf("cnf = %v, want no cnf claim", cnf)
	}
}

func TestSignRefuses(t *testing.T) {
	keyErr := errors.New("key store down")
	tests := []struct {
		name    string
		key     DigestSigner
		kid     string
		mutate  func(*capif.TokenClaims)
		wantErr error
	}{
		{name: "empty kid", key: newMemKey(t), kid: ""},
		{name: "no audience", key: newMemKey(t), kid: "k", mutate: func(c *capif.TokenClaims) { c.Audience = nil }},
		{name: "key error passes through", key: failingKey{keyErr}, kid: "k", wantErr: keyErr},
		{name: "key answers garbage", key: failingKeyDER{}, kid: "k", wantErr: errBadDER},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := sampleClaims()
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			token, err := sign(t.Context(), tc.key, tc.kid, c)
			if err == nil {
				t.Fatalf("Sign = %q, want an error", token)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v in its chain", err, tc.wantErr)
			}
		})
	}
}

type failingKeyDER struct{}

func (failingKeyDER) SignDigest(context.Context, []byte) ([]byte, error) {
	return []byte{0x30, 0x00}, nil
}

// Our method must never take the place of golang-jwt's process-wide ES256.
func TestGlobalES256IsUntouched(t *testing.T) {
	if _, err := sign(t.Context(), newMemKey(t), "k", sampleClaims()); err != nil {
		t.Fatal(err)
	}
	m := jwt.GetSigningMethod("ES256")
	if _, ok := m.(*jwt.SigningMethodECDSA); !ok || m != jwt.SigningMethodES256 {
		t.Fatalf("jwt.GetSigningMethod(\"ES256\") = %T %v, want golang-jwt's own", m, m)
	}
}

// RFC 7517 appendix A.1's EC key; its thumbprint, cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s,
// is what other RFC 7638 implementations (and `openssl dgst -sha256` over the canonical JSON)
// give.
func TestThumbprintKnownVector(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4")
	y, _ := base64.RawURLEncoding.DecodeString("4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM")
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
}

// Coordinates with leading zero bytes must still be published as 32 bytes (RFC 7518 §6.2.1.2).
func TestJWKCoordinatesAreFullWidth(t *testing.T) {
	var found bool
	for range 20000 { // a leading zero in x or y turns up about once in 128 keys
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		point, _ := k.PublicKey.Bytes()
		if point[1] != 0 && point[33] != 0 {
			continue
		}
		found = true
		jwk, err := JWK(&k.PublicKey, "kid")
		if err != nil {
			t.Fatal(err)
		}
		want := capif.JWK{
			Kty: "EC", Crv: "P-256", Kid: "kid", Alg: "ES256", Use: "sig",
			X: base64.RawURLEncoding.EncodeToString(point[1:33]),
			Y: base64.RawURLEncoding.EncodeToString(point[33:]),
		}
		if jwk != want {
			t.Errorf("JWK = %+v, want %+v", jwk, want)
		}
		if back, err := signertest.PublicKey(jwk); err != nil || !back.Equal(&k.PublicKey) {
			t.Errorf("the JWK does not give back the key: %v", err)
		}
		break
	}
	if !found {
		t.Fatal("no key with a short coordinate in 20000 tries")
	}
}

func TestJWKRefusesOtherCurves(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := JWK(&k.PublicKey, "kid"); err == nil {
		t.Error("JWK accepted a P-384 key")
	}
	if _, err := Thumbprint(&k.PublicKey); err == nil {
		t.Error("Thumbprint accepted a P-384 key")
	}
	if _, err := JWK(nil, "kid"); err == nil {
		t.Error("JWK accepted a nil key")
	}
}
