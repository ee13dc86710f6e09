package security

import (
	"crypto/sha256"
	"encoding/base64"
)

// CertThumbprint is the RFC 8705 §3.1 certificate thumbprint: base64url (no padding) of the
// SHA-256 of the certificate's DER, as carried in cnf.x5t#S256.
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
