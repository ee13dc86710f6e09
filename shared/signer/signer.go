// Package signer holds what the Signer adapters (local key, AWS KMS) share: one ES256 JWT code
// path (the JWS compact serialization, written directly: no JWT library on the signing side)
// whose private-key operation is delegated to a DigestSigner, the DER → JOSE signature
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
	"encoding/json"
	"errors"
	"fmt"

	"github.com/capifcore/capif-security/shared/capif"
)

// coordSize is the byte length of a P-256 scalar or coordinate (RFC 7518 §3.4, §6.2.1.2).
const coordSize = 32

// DigestSigner holds a P-256 private key somewhere (memory, KMS) and signs a SHA-256 digest with
// it, answering the ASN.1 DER ECDSA-Sig-Value that crypto/ecdsa and KMS both produce.
type DigestSigner interface {
	SignDigest(ctx context.Context, digest []byte) (der []byte, err error)
}

// Key is one signing key as the JWS code path uses it: the private-key operation and the key's
// JOSE header, encoded once because a key keeps its kid for life.
type Key struct {
	digest DigestSigner
	header string // base64url of {"alg":"ES256","kid":…,"typ":"at+jwt"}
}

// NewKey makes the Key that signs through digest under kid.
func NewKey(digest DigestSigner, kid string) (*Key, error) {
	if digest == nil || kid == "" {
		return nil, errors.New("signer: a key needs a digest signer and a kid")
	}
	js, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{capif.Alg, kid, capif.Typ})
	if err != nil {
		return nil, fmt.Errorf("signer: header: %w", err)
	}
	return &Key{digest: digest, header: b64.EncodeToString(js)}, nil
}

var b64 = base64.RawURLEncoding

// Sign issues the ES256 JWS compact serialization of c with headers typ at+jwt and the key's kid.
// A token without an audience is refused: an AEF must be able to tell it is meant for it, and
// the domain never asks for one.
func (k *Key) Sign(ctx context.Context, c capif.TokenClaims) (string, error) {
	if len(c.Audience) == 0 {
		return "", errors.New("signer: token claims without an audience")
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("signer: claims: %w", err)
	}
	input := k.header + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	der, err := k.digest.SignDigest(ctx, digest[:])
	if err != nil {
		return "", err
	}
	sig, err := derToJOSE(der)
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig[:]), nil
}

// JWK is the public verification key pub as published in the JWKS.
func JWK(pub *ecdsa.PublicKey, kid string) (capif.JWK, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return capif.JWK{}, err
	}
	return capif.JWK{
		Kty: "EC",
		Crv: "P-256",
		X:   base64.RawURLEncoding.EncodeToString(x),
		Y:   base64.RawURLEncoding.EncodeToString(y),
		Kid: kid,
		Alg: capif.Alg,
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
