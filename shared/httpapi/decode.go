package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 1 << 20

// readBody checks the media type and reads at most MaxBody bytes. Errors are domain errors so
// they are reported after the identity checks, in the order the API defines.
func readBody(r *http.Request, want string) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		return nil, security.BadBody(security.KindUnsupportedType, fmt.Sprintf("the request body must be %s", want),
			capif.InvalidParam{Param: "Content-Type", Reason: "must be " + want})
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, security.BadBody(security.KindInvalid, "the request body could not be read")
	}
	if len(b) > MaxBody {
		return nil, security.BadBody(security.KindTooLarge, fmt.Sprintf("the request body exceeds %d bytes", MaxBody))
	}
	return b, nil
}

// decodeJSON reads a JSON body into v. Unknown members are ignored (the 3GPP schemas are open
// for extension); wrong types are reported with the JSON pointer of the member.
func decodeJSON(r *http.Request, v any) error {
	b, err := readBody(r, contentJSON)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			ptr := typeErrorPointer(b, te)
			return security.BadBody(security.KindInvalid, "the request body does not match the schema",
				capif.InvalidParam{Param: ptr, Reason: fmt.Sprintf("must be %s, not %s", jsonType(te.Type.Kind().String()), te.Value)})
		}
		return security.BadBody(security.KindInvalid, "the request body is not valid JSON: "+err.Error())
	}
	// Decoder.More reports false before a stray ']' or '}', so check the rest of the body itself.
	if strings.TrimLeft(string(b[dec.InputOffset():]), " \t\r\n") != "" {
		return security.BadBody(security.KindInvalid, "the request body holds data after the JSON value")
	}
	return nil
}

// typeErrorPointer is the JSON pointer (RFC 6901) of the value a type error is about.
// UnmarshalTypeError.Field lists the member names from the root but no array index, so the body
// (already known to be well-formed) is walked again for the innermost value that ends at or
// spans te.Offset and whose member names are those of Field (matched as encoding/json matches
// them, case-insensitively). Should that fail, Field's names alone are used.
func typeErrorPointer(body []byte, te *json.UnmarshalTypeError) string {
	w := pointerWalk{dec: json.NewDecoder(bytes.NewReader(body)), want: strings.Split(te.Field, "."), offset: te.Offset}
	path := w.want
	if err := w.value(nil, nil, -1); err == nil && w.best != nil {
		path = w.best
	}
	var b strings.Builder
	for _, seg := range path {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(seg))
	}
	return b.String()
}

type pointerWalk struct {
	dec    *json.Decoder
	want   []string // member names from the root
	offset int64
	best   []string // the deepest match so far
}

// value reads one value that starts after offset start; path holds the pointer segments to it,
// names only its member names.
func (w *pointerWalk) value(path, names []string, start int64) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		for w.dec.More() {
			key, err := w.dec.Token()
			if err != nil {
				return err
			}
			k, _ := key.(string)
			if err := w.value(append(path[:len(path):len(path)], k), append(names[:len(names):len(names)], k), w.dec.InputOffset()); err != nil {
				return err
			}
		}
		if _, err := w.dec.Token(); err != nil {
			return err
		}
	case json.Delim('['):
		for i := 0; w.dec.More(); i++ {
			if err := w.value(append(path[:len(path):len(path)], strconv.Itoa(i)), names, w.dec.InputOffset()); err != nil {
				return err
			}
		}
		if _, err := w.dec.Token(); err != nil {
			return err
		}
	}
	if start < w.offset && w.offset <= w.dec.InputOffset() && len(path) > len(w.best) && sameNames(names, w.want) {
		w.best = path
	}
	return nil
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
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

// tokenParams are the AccessTokenReq members; each may appear at most once.
var tokenParams = []string{"grant_type", "client_id", "client_secret", "scope", "resOwnerId", "authCode"}

// decodeTokenRequest parses the form-urlencoded AccessTokenReq. A wrong media type is a 415
// ProblemDetails; anything else wrong an OAuth invalid_request.
func decodeTokenRequest(r *http.Request) (capif.AccessTokenReq, error) {
	var req capif.AccessTokenReq
	b, err := readBody(r, "application/x-www-form-urlencoded")
	if err != nil {
		var e *security.Error
		if errors.As(err, &e) && e.Kind == security.KindInvalid {
			e.OAuthError = capif.InvalidRequest
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
	for _, p := range []string{"grant_type", "client_id"} {
		if form.Get(p) == "" {
			return req, tokenInvalid("parameter " + p + " is required")
		}
	}
	return capif.AccessTokenReq{
		GrantType: form.Get("grant_type"), ClientID: form.Get("client_id"), ClientSecret: form.Get("client_secret"),
		Scope: form.Get("scope"), ResOwnerID: form.Get("resOwnerId"), AuthCode: form.Get("authCode"),
	}, nil
}

func tokenInvalid(detail string) error {
	return &security.Error{Kind: security.KindInvalid, OAuthError: capif.InvalidRequest, Detail: detail}
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
	return &security.Error{Kind: security.KindInvalid, Cause: "INVALID_QUERY_PARAMETER", Detail: detail, InvalidParams: []capif.InvalidParam{p}}
}
