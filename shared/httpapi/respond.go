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
		b, _ = json.Marshal(capif.ProblemDetails{Title: http.StatusText(status), Status: status, Cause: "ENCODING_FAILED"})
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeProblem(w http.ResponseWriter, status int, cause, detail string, params []capif.InvalidParam) {
	writeJSON(w, status, contentProblem, capif.ProblemDetails{
		Title: http.StatusText(status), Status: status, Detail: detail, Cause: cause, InvalidParams: params,
	})
}

var kindStatus = map[security.Kind]int{
	security.KindInvalid:         http.StatusBadRequest,
	security.KindUnauthenticated: http.StatusUnauthorized,
	security.KindForbidden:       http.StatusForbidden,
	security.KindNotFound:        http.StatusNotFound,
	security.KindTooLarge:        http.StatusRequestEntityTooLarge,
	security.KindUnsupportedType: http.StatusUnsupportedMediaType,
	security.KindUnavailable:     http.StatusServiceUnavailable,
	security.KindNotAcceptable:   http.StatusNotAcceptable,
}

// writeError is the one mapping from domain errors to responses: an OAuth error becomes an
// AccessTokenErr, any other *security.Error a ProblemDetails with its status, a back end that is
// throttled or out of time a 503 with Retry-After, anything else a 500 that is logged (the
// client sees no internals).
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *security.Error
	switch {
	case errors.As(err, &e):
		status := kindStatus[e.Kind]
		if status == 0 {
			status = http.StatusInternalServerError
		}
		if e.OAuthError != "" {
			writeJSON(w, status, contentJSON, capif.AccessTokenErr{Error: e.OAuthError, ErrorDescription: e.Detail})
			return
		}
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
		}
		writeProblem(w, status, e.Cause, e.Detail, e.InvalidParams)
	case errors.Is(err, security.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, security.CauseTemporarilyUnavail, "the service is temporarily unavailable; retry", nil)
	default:
		infoOf(r).internal = err
		writeProblem(w, http.StatusInternalServerError, "INTERNAL_ERROR", "the request could not be completed", nil)
	}
}
