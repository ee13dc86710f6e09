// Package signer holds what the Signer adapters (local key, AWS KMS) share: one ES256 JWT code
// path whose private-key operation is delegated to a DigestSigner, the DER → JOSE signature
// conversion, and the JWK form of a P-256 public key.
//
// Tokens produced here verify with stock golang-jwt (jwt.Parse and jwt.SigningMethodES256) and a
// crypto/ecdsa public key built from the published JWK; verifiers need no code of ours.
package signer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/security"
)

// Alg is the JWS algorithm of every token: ECDSA P-256 with SHA-256.
const Alg = "ES256"

// Typ is the JOSE header typ of every token: the RFC 9068 §2.1 access-token type, so that a
// verifier can tell an access token from any other JWT signed by the same key.
const Typ = "at+jwt"

// coordSize is the byte length of a P-256 scalar or coordinate (RFC 7518 §3.4, §6.2.1.2).
const coordSize = 32

// DigestSigner holds a P-256 private key somewhere (memory, KMS) and signs a SHA-256 digest with
// it, answering the ASN.1 DER ECDSA-Sig-Value that crypto/ecdsa and KMS both produce.
type DigestSigner interface {
	SignDigest(ctx context.Context, digest []byte) (der []byte, err error)
}

// method is the ES256 jwt.SigningMethod whose key is a DigestSigner bound to a context. It is
// deliberately never registered with jwt.RegisterSigningMethod: the process-wide "ES256" entry
// stays golang-jwt's own, so parsing anywhere in the process is untouched by our signers.
type method struct{}

// boundKey carries the request context into method.Sign, whose signature has no context.
type boundKey struct {
	ctx context.Context
	key DigestSigner
}

func (method) Alg() string { return Alg }

// Sign hashes the JWS signing input and has the key sign the digest; the DER answer becomes the
// 64-byte R‖S form that JWS requires.
func (method) Sign(signingString string, key any) ([]byte, error) {
	k, ok := key.(boundKey)
	if !ok {
		return nil, jwt.ErrInvalidKeyType
	}
	digest := sha256.Sum256([]byte(signingString))
	der, err := k.key.SignDigest(k.ctx, digest[:])
	if err != nil {
		return nil, err
	}
	return derToJOSE(der)
}

// Verify delegates to golang-jwt's ES256 so the method is complete; our tokens are verified by
// the stock method anyway.
func (method) Verify(signingString string, sig []byte, key any) error {
	return jwt.SigningMethodES256.Verify(signingString, sig, key)
}

// claims is TokenClaims as the JWT payload; the json tags of TokenClaims are the claim names.
type claims security.TokenClaims

func (c claims) GetExpirationTime() (*jwt.NumericDate, error) { return unix(c.Expiry), nil }
func (c claims) GetIssuedAt() (*jwt.NumericDate, error)       { return unix(c.IssuedAt), nil }
func (c claims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

func unix(s int64) *jwt.NumericDate {
	if s == 0 {
		return nil
	}
	return jwt.NewNumericDate(time.Unix(s, 0))
}

// Sign issues the ES256 JWS compact serialization of c with headers typ at+jwt and kid, signing
// through key.
// A token without an audience is refused: an AEF must be able to tell it is meant for it, and
// the domain never asks for one.
func Sign(ctx context.Context, key DigestSigner, kid string, c security.TokenClaims) (string, error) {
	if kid == "" {
		return "", errors.New("signer: empty kid")
	}
	if len(c.Audience) == 0 {
		return "", errors.New("signer: token claims without an audience")
	}
	t := jwt.NewWithClaims(method{}, claims(c))
	t.Header["typ"] = Typ
	t.Header["kid"] = kid
	return t.SignedString(boundKey{ctx: ctx, key: key})
}

// JWK is the public verification key pub as published in the JWKS.
func JWK(pub *ecdsa.PublicKey, kid string) (security.JWK, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return security.JWK{}, err
	}
	return security.JWK{
		Kty: "EC",
		Crv: "P-256",
		X:   base64.RawURLEncoding.EncodeToString(x),
		Y:   base64.RawURLEncoding.EncodeToString(y),
		Kid: kid,
		Alg: Alg,
		Use: "sig",
	}, nil
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub: the hash of the
// required members crv, kty, x, y in lexicographic order, without whitespace.
func Thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return "", err
	}
	// Every member value is base64url or a fixed name, so none needs JSON escaping.
	canonical := `{"crv":"P-256","kty":"EC","x":"` + base64.RawURLEncoding.EncodeToString(x) +
		`","y":"` + base64.RawURLEncoding.EncodeToString(y) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// coordinates returns the 32-byte big-endian x and y of a P-256 public key.
func coordinates(pub *ecdsa.PublicKey) (x, y []byte, err error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, nil, errors.New("signer: the key is not an ECDSA P-256 key")
	}
	point, err := pub.Bytes() // uncompressed SEC 1 form: 0x04 ‖ x ‖ y
	if err != nil {
		return nil, nil, fmt.Errorf("signer: %w", err)
	}
	if len(point) != 1+2*coordSize {
		return nil, nil, errors.New("signer: unexpected P-256 point encoding")
	}
	return point[1 : 1+coordSize], point[1+coordSize:], nil
}
