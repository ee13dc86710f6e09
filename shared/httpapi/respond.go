package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

const (
	contentJSON    = "application/json"
	contentProblem = "application/problem+json"
)

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are written; this is a programming error
		status, contentType = http.StatusInternalServerError, contentProblem
		b, _ = json.Marshal(capif.ProblemDetails{Title: http.StatusText(status), Status: status, Cause: CauseEncodingFailed})
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeProblem(w http.ResponseWriter, status int, cause, detail string, params []capif.InvalidParam) {
	writeJSON(w, status, contentProblem, capif.ProblemDetails{
		Title: http.StatusText(status), Status: status, Detail: detail, Cause: cause, InvalidParams: params,
	})
}

// Causes of the answers the edge gives itself, for requests the domain never sees.
const (
	CauseMalformedBody    = "MALFORMED_BODY"
	CauseUnsupportedMedia = "UNSUPPORTED_MEDIA_TYPE"
	CauseInvalidQuery     = "INVALID_QUERY_PARAMETER"
	CauseNotAcceptable    = "NOT_ACCEPTABLE"
	CauseMethodNotAllowed = "METHOD_NOT_ALLOWED"
	CauseNoSuchResource   = "RESOURCE_NOT_FOUND"
	CauseInternal         = "INTERNAL_ERROR"
	CauseEncodingFailed   = "ENCODING_FAILED"
	CauseClientGone       = "REQUEST_CANCELED"
	CauseInvalidEvent     = "INVALID_EVENT" // Lambda: an event that is no API Gateway REST proxy request
)

// InvalidEvent is the 400 answer (cause INVALID_EVENT) to a Lambda event that is no API Gateway
// REST proxy request the function can read; detail says why.
func InvalidEvent(detail string) error {
	return &requestError{status: http.StatusBadRequest, cause: CauseInvalidEvent, detail: detail, clientFault: errors.New(detail)}
}

// kindStatus is the one table from domain error kinds to status codes.
var kindStatus = map[security.Kind]int{
	security.KindInvalid:         http.StatusBadRequest,
	security.KindUnauthenticated: http.StatusUnauthorized,
	security.KindForbidden:       http.StatusForbidden,
	security.KindNotFound:        http.StatusNotFound,
	security.KindTooLarge:        http.StatusRequestEntityTooLarge,
	security.KindUnavailable:     http.StatusServiceUnavailable,
}

// requestError is a request the edge refuses before or instead of the domain: one it cannot
// read or decode (400, 406, 408, 413, 415). oauth is set on the token endpoint, where RFC 6749
// answers with an AccessTokenErr. clientFault keeps the cause of a broken or slow body for the
// log (the client's fault: never logged as a server error).
type requestError struct {
	status      int
	cause       string
	detail      string
	params      []capif.InvalidParam
	oauth       string
	clientFault error
}

func (e *requestError) Error() string {
	if e.oauth != "" {
		return e.oauth + ": " + e.detail
	}
	return e.cause + ": " + e.detail
}

// writeError is the one mapping from domain errors to responses: an OAuth error becomes an
// AccessTokenErr, any other *security.Error a ProblemDetails with its status, a back end that is
// throttled or out of time a 503 with Retry-After, anything else a 500 that is logged (the
// client sees no internals).
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *security.Error
	var re *requestError
	switch {
	case errors.As(err, &re):
		if re.clientFault != nil {
			infoOf(r).clientFault = re.clientFault
		}
		if re.oauth != "" {
			infoOf(r).oauthError = re.oauth
			writeJSON(w, re.status, contentJSON, capif.AccessTokenErr{Error: re.oauth, ErrorDescription: re.detail})
			return
		}
		writeProblem(w, re.status, re.cause, re.detail, re.params)
	case errors.As(err, &e):
		status := kindStatus[e.Kind]
		if status == 0 {
			status = http.StatusInternalServerError
		}
		if e.OAuthError != "" {
			infoOf(r).oauthError = e.OAuthError
			writeJSON(w, status, contentJSON, capif.AccessTokenErr{Error: e.OAuthError, ErrorDescription: e.Detail})
			return
		}
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
		}
		writeProblem(w, status, e.Cause, e.Detail, e.InvalidParams)
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away (or stopped sending) while the request was served: its fault,
		// and nobody reads this answer.
		infoOf(r).clientFault = err
		writeProblem(w, http.StatusBadRequest, CauseClientGone, "the request was canceled by the client", nil)
	case errors.Is(err, security.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, security.CauseTemporarilyUnavail, "the service is temporarily unavailable; retry", nil)
	default:
		infoOf(r).internal = err
		writeProblem(w, http.StatusInternalServerError, CauseInternal, "the request could not be completed", nil)
	}
}
