// Package signer holds what the Signer adapters (local key, AWS KMS) share: one JWT code path
// (the JWS compact serialization, written directly: no JWT library on the signing side) whose
// private-key operation is delegated to a DigestSigner, for ES256 (ECDSA P-256, the DER
// signature converted to JOSE r‖s) and RS256 (RSASSA-PKCS1-v1_5 over RSA 2048, the signature as
// it comes); the JWK form and RFC 7638 thumbprint of both kinds of public key.
//
// Tokens produced here verify with stock golang-jwt (jwt.SigningMethodES256 or RS256) and a
// public key built from the published JWK; verifiers need no code of ours.
package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/capifcore/capif-security/shared/capif"
)

// coordSize is the byte length of a P-256 scalar or coordinate (RFC 7518 §3.4, §6.2.1.2).
const coordSize = 32

// DigestSigner holds a private key somewhere (memory, KMS) and signs a SHA-256 digest with it:
// for ES256 the ASN.1 DER ECDSA-Sig-Value that crypto/ecdsa and KMS both produce, for RS256 the
// PKCS #1 v1.5 signature.
type DigestSigner interface {
	SignDigest(ctx context.Context, digest []byte) (sig []byte, err error)
}

// InMemory is the DigestSigner of a private key held in this process (ECDSA answers DER, RSA a
// PKCS #1 v1.5 signature over the SHA-256 digest).
type InMemory struct{ Key crypto.Signer }

// SignDigest signs digest with the key.
func (m InMemory) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	return m.Key.Sign(rand.Reader, digest, crypto.SHA256)
}

// GenerateKey makes a fresh private key of alg: ECDSA P-256 for ES256, RSA 2048 for RS256.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case capif.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case capif.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("signer: no key for %q", alg)
}

// Key is one signing key as the JWS code path uses it: its algorithm, the private-key operation
// and the key's JOSE header, encoded once because a key keeps its kid for life.
type Key struct {
	alg    string
	digest DigestSigner
	header string // base64url of {"alg":…,"kid":…,"typ":"at+jwt"}
}

// NewKey makes the Key that signs with alg (capif.ES256 or capif.RS256) through digest under
// kid.
func NewKey(alg string, digest DigestSigner, kid string) (*Key, error) {
	if digest == nil || kid == "" || alg != capif.ES256 && alg != capif.RS256 {
		return nil, errors.New("signer: a key needs ES256 or RS256, a digest signer and a kid")
	}
	js, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, capif.Typ})
	if err != nil {
		return nil, fmt.Errorf("signer: header: %w", err)
	}
	return &Key{alg: alg, digest: digest, header: b64.EncodeToString(js)}, nil
}

// Alg is the key's algorithm.
func (k *Key) Alg() string { return k.alg }

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
	sig, err := k.digest.SignDigest(ctx, digest[:])
	if err != nil {
		return "", err
	}
	if k.alg == capif.ES256 {
		jose, err := derToJOSE(sig)
		if err != nil {
			return "", err
		}
		sig = jose[:]
	} else if len(sig) != rsaBytes {
		return "", fmt.Errorf("signer: an RS256 signature of %d bytes, want %d", len(sig), rsaBytes)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// rsaBits is the size of every RS256 key: RSA 2048, as RFC 7518 §3.3 requires at least and KMS
// RSA_2048 keys are; rsaBytes a signature's length.
const (
	rsaBits  = 2048
	rsaBytes = rsaBits / 8
)

// JWK is the public verification key pub (ECDSA P-256, or RSA 2048 with exponent 65537) as
// published in the JWKS, with the algorithm of its kind.
func JWK(pub crypto.PublicKey, kid string) (capif.JWK, error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		x, y, err := coordinates(pub)
		if err != nil {
			return capif.JWK{}, err
		}
		return capif.JWK{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(x), Y: b64.EncodeToString(y), Kid: kid, Alg: capif.ES256, Use: "sig"}, nil
	case *rsa.PublicKey:
		n, e, err := rsaMembers(pub)
		if err != nil {
			return capif.JWK{}, err
		}
		return capif.JWK{Kty: "RSA", N: n, E: e, Kid: kid, Alg: capif.RS256, Use: "sig"}, nil
	}
	return capif.JWK{}, errors.New("signer: the key is neither ECDSA P-256 nor RSA")
}

// AlgOf is the token algorithm of a public key: ES256 for ECDSA P-256, RS256 for RSA 2048 with
// exponent 65537; "" for anything else.
func AlgOf(pub crypto.PublicKey) string {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return capif.ES256
		}
	case *rsa.PublicKey:
		if _, _, err := rsaMembers(pub); err == nil {
			return capif.RS256
		}
	}
	return ""
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub: the hash of the
// required members in lexicographic order, without whitespace (crv, kty, x, y for EC; e, kty, n
// for RSA).
func Thumbprint(pub crypto.PublicKey) (string, error) {
	var canonical string
	// Every member value is base64url or a fixed name, so none needs JSON escaping.
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		x, y, err := coordinates(pub)
		if err != nil {
			return "", err
		}
		canonical = `{"crv":"P-256","kty":"EC","x":"` + b64.EncodeToString(x) + `","y":"` + b64.EncodeToString(y) + `"}`
	case *rsa.PublicKey:
		n, e, err := rsaMembers(pub)
		if err != nil {
			return "", err
		}
		canonical = `{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`
	default:
		return "", errors.New("signer: the key is neither ECDSA P-256 nor RSA")
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:]), nil
}

// rsaMembers are the base64url n and e of an RSA 2048 key with exponent 65537 (RFC 7518
// §6.3.1: unsigned big-endian, no leading zero).
func rsaMembers(pub *rsa.PublicKey) (n, e string, err error) {
	if pub == nil || pub.N == nil || pub.N.BitLen() != rsaBits || pub.E != 65537 {
		return "", "", errors.New("signer: the key is not RSA 2048 with exponent 65537")
	}
	return b64.EncodeToString(pub.N.Bytes()), b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()), nil
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
