package aefauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// The RFC 6750 §3.1 error codes.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
)

// Error is a refusal, carrying the RFC 6750 answer it maps to. Every error Verify returns is one.
type Error struct {
	// Status is the HTTP status: 400, 401 or 403, or 503 when the CCF's keys cannot be fetched.
	Status int
	// Code is the RFC 6750 error code; empty for a request that carried no bearer token at all
	// (§3.1: no error code then) and for 503.
	Code string
	// Description is a short English reason without any part of the token.
	Description string
	// Scope is the scope the request needs, given with insufficient_scope.
	Scope string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return "aefauth: " + e.Description
	}
	return "aefauth: " + e.Code + ": " + e.Description
}

func refuse(status int, code, description string) *Error {
	return &Error{Status: status, Code: code, Description: description}
}

func invalidToken(description string) *Error {
	return refuse(http.StatusUnauthorized, CodeInvalidToken, description)
}

// WriteError answers a refused request the RFC 6750 way: the status, a WWW-Authenticate Bearer
// challenge naming the error, and a small JSON body with the same error and description. An err
// that is not an *Error is answered as 500 without detail.
func WriteError(w http.ResponseWriter, realm string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusBadRequest {
		h.Set("WWW-Authenticate", challenge(realm, e))
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	body := map[string]string{}
	if e.Code != "" {
		body["error"] = e.Code
	}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	_ = json.NewEncoder(w).Encode(body)
}

// challenge is the RFC 6750 §3 Bearer challenge for e.
func challenge(realm string, e *Error) string {
	var params []string
	if realm != "" {
		params = append(params, `realm="`+quotable(realm)+`"`)
	}
	if e.Code != "" {
		params = append(params, `error="`+e.Code+`"`)
		if e.Description != "" {
			params = append(params, `error_description="`+quotable(e.Description)+`"`)
		}
		if e.Scope != "" {
			params = append(params, `scope="`+quotable(e.Scope)+`"`)
		}
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

// quotable keeps only the characters RFC 6750 §3 allows inside the quoted values
// (%x20-21 / %x23-5B / %x5D-7E), so that nothing can break out of the header's syntax.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
