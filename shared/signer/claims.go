package signer

import (
	"strconv"

	"github.com/capifcore/capif-security/shared/jsonenc"
	"github.com/capifcore/capif-security/shared/security"
)

// appendClaims appends the JWT claims set of c: the members named by TokenClaims' json tags, in
// their order, written without reflection because it is on every token's path (a test holds it
// to encoding/json's document of the same claims).
func appendClaims(dst []byte, c *security.TokenClaims) []byte {
	dst = append(dst, `{"iss":`...)
	dst = jsonenc.AppendString(dst, c.Issuer)
	dst = append(dst, `,"sub":`...)
	dst = jsonenc.AppendString(dst, c.Subject)
	dst = append(dst, `,"client_id":`...)
	dst = jsonenc.AppendString(dst, c.ClientID)
	dst = append(dst, `,"aud":[`...)
	for i, a := range c.Audience {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonenc.AppendString(dst, a)
	}
	dst = append(dst, `],"scope":`...)
	dst = jsonenc.AppendString(dst, c.Scope)
	dst = append(dst, `,"iat":`...)
	dst = strconv.AppendInt(dst, c.IssuedAt, 10)
	dst = append(dst, `,"exp":`...)
	dst = strconv.AppendInt(dst, c.Expiry, 10)
	dst = append(dst, `,"jti":`...)
	dst = jsonenc.AppendString(dst, c.ID)
	if c.Confirmation != nil {
		dst = append(dst, `,"cnf":{"x5t#S256":`...)
		dst = jsonenc.AppendString(dst, c.Confirmation.X5tS256)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}
