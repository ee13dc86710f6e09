// Package signertest verifies issued tokens the way an AEF would: only golang-jwt's stock
// jwt.Parse with ES256 or RS256 and a crypto/ecdsa or crypto/rsa public key built from the
// published JWKS. It uses nothing of package signer, so a test through it checks the tokens, not
// our own reading of them.
package signertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/capif"
)

// PublicKey builds the crypto/ecdsa key of an EC P-256 JWK.
func PublicKey(k capif.JWK) (*ecdsa.PublicKey, error) {
	if k.Kty != "EC" || k.Crv != "P-256" {
		return nil, fmt.Errorf("kid %q: not an EC P-256 key (kty %q, crv %q)", k.Kid, k.Kty, k.Crv)
	}
	x, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil {
		return nil, fmt.Errorf("kid %q: x: %w", k.Kid, err)
	}
	y, err := base64.RawURLEncoding.DecodeString(k.Y)
	if err != nil {
		return nil, fmt.Errorf("kid %q: y: %w", k.Kid, err)
	}
	if len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("kid %q: coordinates are %d and %d bytes, want 32", k.Kid, len(x), len(y))
	}
	point := append(append([]byte{0x04}, x...), y...)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
}

// RSAPublicKey builds the crypto/rsa key of an RSA JWK.
func RSAPublicKey(k capif.JWK) (*rsa.PublicKey, error) {
	if k.Kty != "RSA" {
		return nil, fmt.Errorf("kid %q: not an RSA key (kty %q)", k.Kid, k.Kty)
	}
	n, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil {
		return nil, fmt.Errorf("kid %q: n: %w", k.Kid, err)
	}
	e, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil || len(e) > 4 {
		return nil, fmt.Errorf("kid %q: e: %v", k.Kid, err)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
}

// Parse verifies token against jwks: the key is chosen by the kid header, the algorithm must be
// the key's (ES256 for EC, RS256 for RSA), the typ header must be RFC 9068's at+jwt, and exp is
// checked by golang-jwt's default validation.
func Parse(token string, jwks capif.JWKSet) (*jwt.Token, jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	var want jwt.SigningMethod
	t, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != "at+jwt" {
			return nil, fmt.Errorf("typ %q, want at+jwt", typ)
		}
		kid, _ := t.Header["kid"].(string)
		for _, k := range jwks.Keys {
			if k.Kid != kid {
				continue
			}
			switch {
			case k.Kty == "EC" && (k.Alg == "" || k.Alg == "ES256") && t.Method == jwt.SigningMethodES256:
				want = jwt.SigningMethodES256
				return PublicKey(k)
			case k.Kty == "RSA" && (k.Alg == "" || k.Alg == "RS256") && t.Method == jwt.SigningMethodRS256:
				want = jwt.SigningMethodRS256
				return RSAPublicKey(k)
			}
			return nil, fmt.Errorf("kid %q (kty %q, alg %q) does not sign %s", kid, k.Kty, k.Alg, t.Method.Alg())
		}
		return nil, fmt.Errorf("kid %q is not in the JWKS", kid)
	}, jwt.WithValidMethods([]string{"ES256", "RS256"}))
	if err != nil {
		return nil, nil, err
	}
	// jwt.Parse picked the method from the global registry; make sure it was the stock one.
	if t.Method != want {
		return nil, nil, errors.New("the token was not verified by golang-jwt's own method")
	}
	return t, claims, nil
}
