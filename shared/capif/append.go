package capif

import (
	"strconv"

	"github.com/capifcore/capif-security/shared/jsonenc"
)

// AppendJSON appends r as encoding/json would write it (its json tags; scope left out when
// empty), without reflection: it is the body of every token answered (a test holds the two to
// the same document).
func (r *AccessTokenRsp) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"access_token":`...)
	dst = jsonenc.AppendString(dst, r.AccessToken)
	dst = append(dst, `,"token_type":`...)
	dst = jsonenc.AppendString(dst, r.TokenType)
	dst = append(dst, `,"expires_in":`...)
	dst = strconv.AppendInt(dst, r.ExpiresIn, 10)
	if r.Scope != "" {
		dst = append(dst, `,"scope":`...)
		dst = jsonenc.AppendString(dst, r.Scope)
	}
	return append(dst, '}')
}
