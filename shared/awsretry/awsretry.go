// Package awsretry is the one answer to "is this AWS failure worth retrying, and for how long":
// Transient classifies an error from any AWS client (DynamoDB, KMS, S3), and Policy is one
// dependency's retry budget (attempts, per-attempt timeout, maximum backoff), applied to its
// client with Policy.Apply. docs/dynamodb.md tabulates what the policies cost per operation.
package awsretry

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// transientCodes are the API error codes of DynamoDB, KMS and S3 that mean "cannot serve now,
// may soon": throttling, internal and dependency failures, an unreachable key, a running
// transaction on the item.
var transientCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"Throttling":                             true,
	"TooManyRequestsException":               true,
	"RequestLimitExceeded":                   true,
	"LimitExceededException":                 true,
	"SlowDown":                               true,
	"InternalServerError":                    true,
	"InternalError":                          true,
	"InternalFailure":                        true,
	"KMSInternalException":                   true,
	"DependencyTimeoutException":             true,
	"KeyUnavailableException":                true,
	"ServiceUnavailable":                     true,
	"ServiceUnavailableException":            true,
	"RequestTimeout":                         true,
	"RequestTimeoutException":                true,
	"TransactionConflictException":           true,
	"TransactionInProgressException":         true,
}

// Transient reports whether err may succeed later, so the caller answers 503 (Retry-After)
// rather than 500: the deadline or a cancellation, retries exhausted on a retryable error, an
// empty retry token bucket, no answer at all (connection refused, reset, attempt timeout), a
// throttling or server-fault code, or an HTTP 429/5xx.
func Transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var (
		maxed  *retry.MaxAttemptsError
		quota  ratelimit.QuotaExceededError
		send   *smithyhttp.RequestSendError
		api    smithy.APIError
		status interface{ HTTPStatusCode() int }
	)
	switch {
	case errors.As(err, &maxed), errors.As(err, &quota), errors.As(err, &send):
		return true
	case errors.As(err, &api) && (transientCodes[api.ErrorCode()] || api.ErrorFault() == smithy.FaultServer):
		return true
	case errors.As(err, &status):
		return status.HTTPStatusCode() == 429 || status.HTTPStatusCode() >= 500
	}
	return false
}
