package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 1 << 20

// readBody checks the media type and reads at most MaxBody bytes. A body that breaks off, or
// arrives slower than the server's read timeout, is the client's fault: 400 or 408.
func readBody(r *http.Request, want string) ([]byte, error) {
	ct := r.Header.Values("Content-Type")
	mt, err := "", errors.New("no single Content-Type")
	if len(ct) == 1 {
		mt, _, err = mime.ParseMediaType(ct[0])
	}
	if len(ct) != 1 || err != nil || mt != want {
		return nil, &requestError{status: http.StatusUnsupportedMediaType, cause: CauseUnsupportedMedia, detail: fmt.Sprintf("the request body must be %s", want),
			params: []capif.InvalidParam{{Param: "Content-Type", Reason: "must be " + want + ", once"}}}
	}
	if ce := r.Header.Values("Content-Encoding"); len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return nil, &requestError{status: http.StatusUnsupportedMediaType, cause: CauseUnsupportedMedia, detail: "the request body must not be content-encoded",
			params: []capif.InvalidParam{{Param: "Content-Encoding", Reason: "only identity is accepted"}}}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, bodyReadError(err)
	}
	if len(b) > MaxBody {
		return nil, &requestError{status: http.StatusRequestEntityTooLarge, cause: security.CauseTooLarge, detail: fmt.Sprintf("the request body exceeds %d bytes", MaxBody)}
	}
	return b, nil
}

// bodyReadError classifies a failed body read: a read timeout is 408, anything else (a body
// shorter than its Content-Length, a connection closed mid-body) 400. Both are clientFault, so
// they are logged as such and never counted as server errors.
func bodyReadError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &requestError{status: http.StatusRequestTimeout, cause: CauseMalformedBody, detail: "the request body did not arrive in time", clientFault: err}
	}
	return &requestError{status: http.StatusBadRequest, cause: CauseMalformedBody, detail: "the request body could not be read completely", clientFault: err}
}

// decodeJSON reads a JSON body into v. Unknown members are ignored (the 3GPP schemas are open
// for extension); structural faults (checkJSON) and wrong types are 400, the latter with the
// JSON pointer of the member.
func decodeJSON(r *http.Request, v any) error {
	b, err := readBody(r, contentJSON)
	if err != nil {
		return err
	}
	if err := checkJSON(b); err != nil {
		return malformed("the request body is not acceptable JSON: " + err.Error())
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &requestError{status: http.StatusBadRequest, cause: CauseMalformedBody, detail: "the request body does not match the schema",
				params: []capif.InvalidParam{{Param: pointerAt(b, te.Offset, te.Field), Reason: fmt.Sprintf("must be %s, not %s", jsonType(te.Type.Kind().String()), te.Value)}}}
		}
		return malformed("the request body does not match the schema: " + err.Error())
	}
	return nil
}

func malformed(detail string) error {
	return &requestError{status: http.StatusBadRequest, cause: CauseMalformedBody, detail: detail}
}

func jsonType(kind string) string {
	switch kind {
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	}
	return "a number"
}

// tokenParams are the AccessTokenReq members; each may appear at most once. Others (Rel-19's
// redirect_uri, resOwnerId[gpsi], …) are ignored.
var tokenParams = [...]string{"grant_type", "client_id", "client_secret", "scope", "resOwnerId", "authCode"}

// BasicRealm is the realm of the HTTP Basic challenge on the token endpoint.
const BasicRealm = "capif-security"

// decodeTokenRequest parses the form-urlencoded AccessTokenReq and merges the client
// credentials of an HTTP Basic Authorization header (client_secret_basic, RFC 6749 §2.3.1)
// into it. A wrong media type is a 415 ProblemDetails; anything else wrong an OAuth
// invalid_request, or invalid_client for unreadable Basic credentials.
func decodeTokenRequest(r *http.Request) (capif.AccessTokenReq, error) {
	var req capif.AccessTokenReq
	basicID, basicSecret, hasBasic, err := basicCredentials(r)
	if err != nil {
		return req, err
	}
	b, err := readBody(r, "application/x-www-form-urlencoded")
	if err != nil {
		var e *requestError
		if errors.As(err, &e) && e.status == http.StatusBadRequest {
			e.oauth = capif.InvalidRequest
		}
		return req, err
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return req, tokenInvalid("the request body is not valid application/x-www-form-urlencoded")
	}
	for _, p := range tokenParams {
		if len(form[p]) > 1 {
			return req, tokenInvalid("parameter " + p + " is repeated")
		}
	}
	req = capif.AccessTokenReq{
		GrantType: form.Get("grant_type"), ClientID: form.Get("client_id"), ClientSecret: form.Get("client_secret"),
		Scope: form.Get("scope"), ResOwnerID: form.Get("resOwnerId"), AuthCode: form.Get("authCode"),
	}
	if hasBasic {
		switch {
		case req.ClientID != "" && req.ClientID != basicID:
			return req, tokenInvalid("client_id differs from the user name of the Authorization header")
		case basicSecret != "" && form.Has("client_secret"):
			return req, tokenInvalid("the client authenticated with more than one method (a secret in the Authorization header and in the body)")
		}
		req.ClientID = basicID
		if basicSecret != "" {
			req.ClientSecret = basicSecret
		}
	}
	switch {
	case req.GrantType == "":
		return req, tokenInvalid("parameter grant_type is required")
	case req.ClientID == "":
		return req, tokenInvalid("parameter client_id is required (in the body or as the user name of HTTP Basic authentication)")
	}
	return req, nil
}

// basicCredentials reads an HTTP Basic Authorization header: user name and password are each
// form-urlencoded before base64 (RFC 6749 §2.3.1), so they are decoded here.
func basicCredentials(r *http.Request) (id, secret string, ok bool, err error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", "", false, nil
	}
	scheme, _, _ := strings.Cut(h[0], " ")
	if len(h) > 1 || !strings.EqualFold(scheme, "Basic") {
		return "", "", false, tokenInvalid("only one Authorization header, of the Basic scheme, is accepted on the token endpoint")
	}
	user, pass, ok := r.BasicAuth()
	if ok {
		if user, err = url.QueryUnescape(user); err == nil {
			pass, err = url.QueryUnescape(pass)
		}
	}
	if !ok || err != nil || user == "" {
		return "", "", true, &requestError{status: http.StatusUnauthorized, oauth: capif.InvalidClient, detail: "the Basic credentials of the Authorization header cannot be read"}
	}
	return user, pass, true, nil
}

// challengeBasic adds the HTTP Basic challenge to an invalid_client answer to a request that
// authenticated with HTTP Basic (RFC 6749 §5.2).
func challengeBasic(w http.ResponseWriter, r *http.Request, err error) {
	if len(r.Header.Values("Authorization")) == 0 {
		return
	}
	var se *security.Error
	var re *requestError
	if errors.As(err, &se) && se.OAuthError == capif.InvalidClient || errors.As(err, &re) && re.oauth == capif.InvalidClient {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+BasicRealm+`"`)
	}
}

func tokenInvalid(detail string) error {
	return &requestError{status: http.StatusBadRequest, oauth: capif.InvalidRequest, detail: detail}
}

// parseQuery parses the raw query strictly: URL.Query drops malformed pairs silently, which
// would turn a mistyped flag into an absent one.
func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, queryError("the query string is malformed", capif.InvalidParam{Param: "query", Reason: "not valid percent-encoding"})
	}
	return q, nil
}

// queryFlag parses an optional boolean query parameter ("true" or "false", at most once).
func queryFlag(q url.Values, name string) (bool, error) {
	vs := q[name]
	switch {
	case len(vs) == 0:
		return false, nil
	case len(vs) > 1:
		return false, queryError("query parameter "+name+" is repeated", capif.InvalidParam{Param: name, Reason: "appears more than once"})
	case vs[0] == "true":
		return true, nil
	case vs[0] == "false":
		return false, nil
	}
	return false, queryError("query parameter "+name+" must be true or false", capif.InvalidParam{Param: name, Reason: "must be true or false"})
}

func queryError(detail string, p capif.InvalidParam) error {
	return &requestError{status: http.StatusBadRequest, cause: CauseInvalidQuery, detail: detail, params: []capif.InvalidParam{p}}
}
