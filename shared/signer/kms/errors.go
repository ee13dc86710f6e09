package kms

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/capifcore/capif-security/shared/security"
)

// unavailableCodes are the API error codes that say KMS cannot serve now but may soon: request
// throttling, internal and dependency failures, an unreachable key store.
var unavailableCodes = map[string]bool{
	"ThrottlingException":         true,
	"Throttling":                  true,
	"TooManyRequestsException":    true,
	"RequestLimitExceeded":        true,
	"KMSInternalException":        true,
	"DependencyTimeoutException":  true,
	"KeyUnavailableException":     true,
	"InternalFailure":             true,
	"ServiceUnavailable":          true,
	"ServiceUnavailableException": true,
	"RequestTimeout":              true,
	"RequestTimeoutException":     true,
}

// classify names the failed call and wraps security.ErrUnavailable around failures worth a 503
// (the client may retry); every other error stays plain and becomes a 500.
// A failure after the caller's own context ended stays plain: the caller gave up, KMS did not.
func classify(ctx context.Context, op, keyID string, err error) error {
	if ctx.Err() == nil && unavailable(err) {
		return fmt.Errorf("kms %s %s: %w: %w", op, keyID, security.ErrUnavailable, err)
	}
	return fmt.Errorf("kms %s %s: %w", op, keyID, err)
}

func unavailable(err error) bool {
	var (
		attempts *retry.MaxAttemptsError      // the retryer gave up on a retryable error
		quota    ratelimit.QuotaExceededError // the retry token bucket is empty
		send     *smithyhttp.RequestSendError // no answer: connection refused, reset, timeout
		api      smithy.APIError              // KMS answered with an error code
		status   interface{ HTTPStatusCode() int }
	)
	switch {
	case errors.As(err, &attempts), errors.As(err, &quota), errors.As(err, &send):
		return true
	case errors.As(err, &api) && unavailableCodes[api.ErrorCode()]:
		return true
	case errors.As(err, &status):
		return status.HTTPStatusCode() == 429 || status.HTTPStatusCode() >= 500
	}
	return false
}
