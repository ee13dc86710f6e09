package security

import (
	"errors"
	"fmt"

	"github.com/capifcore/capif-security/shared/capif"
)

// Sentinel errors of the ports. Adapters wrap them; the domain tests them with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrConflict    = errors.New("version conflict")
	ErrUnavailable = errors.New("back end unavailable") // throttled or retries exhausted: 503
	ErrRoleClash   = errors.New("id already registered with the other role")
	// ErrUndeliverable marks a notification the destination can never accept: delivery gives up
	// at once and dead-letters it.
	ErrUndeliverable = errors.New("the destination can never accept the notification")
	// ErrNotAccepted marks an AEF's refusal of the request or of the CCF's certificate (400,
	// 401, 403, 411, 413, 415, a failed TLS handshake), or a push this process could not make
	// for want of that certificate: retried, and logged as the service's fault.
	ErrNotAccepted = errors.New("the AEF did not accept the request or the CCF's certificate")
	// ErrNoListener marks a destination where nothing listens (connection refused): retried
	// quietly until it is dead.
	ErrNoListener = errors.New("nothing listens at the destination")
)

// Kind classifies a domain error; the HTTP layer maps each kind to one status code.
type Kind int

// The error kinds of the API.
const (
	KindInvalid         Kind = iota + 1 // 400
	KindUnauthenticated                 // 401
	KindForbidden                       // 403
	KindNotFound                        // 404
	KindTooLarge                        // 413: what would be stored is too large
	KindUnavailable                     // 503
)

// Error is a rejected request. OAuthError is set on token endpoint errors that RFC 6749 answers
// with an AccessTokenErr; everything else becomes a ProblemDetails.
type Error struct {
	Kind          Kind
	Cause         string
	Detail        string
	InvalidParams []capif.InvalidParam
	OAuthError    string
	RetryAfter    int // seconds, for KindUnavailable
}

func (e *Error) Error() string {
	if e.OAuthError != "" {
		return e.OAuthError + ": " + e.Detail
	}
	return e.Cause + ": " + e.Detail
}

// Application causes the domain puts in ProblemDetails.cause (the edge has its own for
// requests it cannot decode).
const (
	CauseInvalidParameter   = "INVALID_PARAMETER"
	CauseUnauthenticated    = "UNAUTHENTICATED"
	CauseRoleNotAllowed     = "ROLE_NOT_ALLOWED"
	CauseNotOwner           = "NOT_OWNER"
	CauseContextExists      = "SECURITY_CONTEXT_EXISTS"
	CauseContextNotFound    = "SECURITY_CONTEXT_NOT_FOUND"
	CauseAPINotPublished    = "API_NOT_PUBLISHED_BY_AEF"
	CauseAPINotInContext    = "API_NOT_IN_CONTEXT"
	CauseTooLarge           = "CONTEXT_TOO_LARGE"
	CauseTemporarilyUnavail = "TEMPORARILY_UNAVAILABLE"
)

func invalid(detail string, params ...capif.InvalidParam) *Error {
	return &Error{Kind: KindInvalid, Cause: CauseInvalidParameter, Detail: detail, InvalidParams: params}
}

func param(pointer, format string, args ...any) capif.InvalidParam {
	return capif.InvalidParam{Param: pointer, Reason: fmt.Sprintf(format, args...)}
}

func unauthenticated(detail string) *Error {
	return &Error{Kind: KindUnauthenticated, Cause: CauseUnauthenticated, Detail: detail}
}

func forbidden(cause, detail string) *Error {
	return &Error{Kind: KindForbidden, Cause: cause, Detail: detail}
}

func notFound(cause, detail string) *Error {
	return &Error{Kind: KindNotFound, Cause: cause, Detail: detail}
}

func oauth(kind Kind, code, detail string) *Error {
	return &Error{Kind: kind, OAuthError: code, Detail: detail}
}

// Unavailable is the 503 answer when the back end is throttled or a write kept conflicting.
func Unavailable(detail string) *Error {
	return &Error{Kind: KindUnavailable, Cause: CauseTemporarilyUnavail, Detail: detail, RetryAfter: 1}
}
