package security

import (
	"crypto/sha256"
	"encoding/base64"
)

// CertThumbprint is the RFC 8705 §3.1 x5t#S256 value of an X.509 certificate: the base64url
// (no padding) SHA-256 of its DER encoding. The CCF puts it in a token's cnf and an AEF compares
// it with the certificate on its own connection; both sides use this one definition.
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
