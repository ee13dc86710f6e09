// Package awsretry is the one answer to "is this AWS failure worth retrying, and for how long":
// Transient classifies an error from any AWS client (DynamoDB, KMS, S3), and Policy is one
// dependency's retry budget (attempts, per-attempt timeout, maximum backoff), applied to its
// client with Policy.Apply. docs/dynamodb.md tabulates what the policies cost per operation.
package awsretry

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
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

// Policy is the retry budget of one dependency: every request is tried at most Attempts times
// (the first included), each attempt bounded by AttemptTimeout (an attempt that times out is
// retried like a refused connection), with full-jitter backoff of at most MaxBackoff between
// attempts. Every delay also ends at the caller's deadline.
type Policy struct {
	Name           string
	Attempts       int
	AttemptTimeout time.Duration
	MaxBackoff     time.Duration
}

// The policy of each dependency. A request path pays at most WorstCase per call; docs/dynamodb.md
// sums them per operation, and a test keeps each sum below the functions' Timeout minus the
// deadline margin (template.yaml).
var (
	DynamoDB = Policy{Name: "DynamoDB", Attempts: 3, AttemptTimeout: time.Second, MaxBackoff: 100 * time.Millisecond}
	KMS      = Policy{Name: "KMS", Attempts: 3, AttemptTimeout: time.Second, MaxBackoff: 100 * time.Millisecond}
	S3       = Policy{Name: "S3", Attempts: 3, AttemptTimeout: time.Second, MaxBackoff: 200 * time.Millisecond}
)

// WorstCase is the longest one call can take before its answer: every attempt times out and
// every backoff is the longest.
func (p Policy) WorstCase() time.Duration {
	return time.Duration(p.Attempts)*p.AttemptTimeout + time.Duration(p.Attempts-1)*p.MaxBackoff
}

// Retryer is the SDK retryer of the policy: the standard retryer's rules (Transient's codes,
// throttling, 5xx, connection errors and timeouts), Attempts and MaxBackoff.
func (p Policy) Retryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = p.Attempts
		o.MaxBackoff = p.MaxBackoff
	})
}

// HTTPClient bounds each attempt of c by AttemptTimeout. c is the SDK's buildable client (the
// default; nil means that one); any other client (a test's) is returned as it is.
func (p Policy) HTTPClient(c aws.HTTPClient) aws.HTTPClient {
	if c == nil {
		return awshttp.NewBuildableClient().WithTimeout(p.AttemptTimeout)
	}
	if b, ok := c.(*awshttp.BuildableClient); ok {
		return b.WithTimeout(p.AttemptTimeout)
	}
	return c
}
