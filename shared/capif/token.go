package capif

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"time"
)

// The JWS algorithms of access tokens: ECDSA P-256 with SHA-256 (the default) and RSASSA-PKCS1-v1_5
// with SHA-256 over an RSA 2048 key, which RFC 9068 §2.1 requires every conforming party to
// support. The algorithm belongs to each key.
const (
	ES256 = "ES256"
	RS256 = "RS256"
)

// Algs are the token algorithms, the default first.
var Algs = []string{ES256, RS256}

// Typ is the JOSE header typ of every access token: the RFC 9068 §2.1 access-token type, so
// that a verifier can tell an access token from any other JWT signed by the same key.
const Typ = "at+jwt"

// TokenClaims are the claims of an access token (TS 33.122 Annex C plus RFC 9068-style sub, aud,
// iat and jti, and the RFC 8705 cnf that binds the token to the invoker's certificate): what the
// CCF signs and an AEF verifies.
type TokenClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Audience []string `json:"aud"`
	Scope    string   `json:"scope"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
	ID       string   `json:"jti"`
	// Confirmation is nil only for a token that is bound to no certificate.
	Confirmation *Confirmation `json:"cnf,omitempty"`
}

// Confirmation is the RFC 8705 §3.1 cnf claim: the CertThumbprint of the client certificate that
// authenticated the token request. An AEF that checks it refuses the token on any other TLS
// connection.
type Confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// Leeway is the clock skew between the CCF and an AEF that verifiers allow on exp, iat and nbf:
// the most TS 33.122 permits. Key rotation waits it out too.
const Leeway = 30 * time.Second

// JWKSMaxAge is how long the CCF lets a verifier cache its JWKS (Cache-Control max-age) and how
// long aefauth keeps a fetched set by default: key rotation waits it out before a new key signs.
const JWKSMaxAge = 300 * time.Second

// CertThumbprint is the RFC 8705 §3.1 x5t#S256 value of an X.509 certificate: the base64url
// (no padding) SHA-256 of its DER encoding. The CCF puts it in a token's cnf and an AEF compares
// it with the certificate on its own connection; both sides use this one definition.
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWK is one public verification key (RFC 7517/7518, EC P-256).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"` // EC
	X   string `json:"x,omitempty"`   // EC
	Y   string `json:"y,omitempty"`   // EC
	N   string `json:"n,omitempty"`   // RSA modulus
	E   string `json:"e,omitempty"`   // RSA public exponent
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKSet is the body of /.well-known/jwks.json.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// SubjectCN is a certificate's one Subject CN, and false when its subject has none or several:
// the identity rule of CAPIF certificates (the CN is the apiInvokerId or aefId, or the CCF's
// name), applied alike by the CCF and by AEFs.
func SubjectCN(c *x509.Certificate) (string, bool) {
	var cns []string
	for _, atv := range c.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			s, _ := atv.Value.(string)
			cns = append(cns, s)
		}
	}
	if len(cns) != 1 {
		return "", false
	}
	return cns[0], true
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// CertificateKey identifies a certificate for revocation and pinning: the base64url SHA-256 of
// its signed part (TBSCertificate). Unlike CertThumbprint it does not change when the bytes of
// the CA's signature are re-encoded (an ECDSA signature (r, s) verifies as (r, n−s) too), so a
// revoked certificate cannot come back as "another" one.
func CertificateKey(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawTBSCertificate)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
