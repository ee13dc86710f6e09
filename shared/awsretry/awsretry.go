// Package awsretry is the one answer to "is this AWS failure worth retrying, and for how long":
// Transient classifies an error from any AWS client (DynamoDB, KMS, S3), and Policy is one
// dependency's retry budget (attempts, per-attempt timeout, maximum backoff), applied to its
// client with Policy.Retryer and Policy.HTTPClient. docs/dynamodb.md tabulates what the policies
// cost per operation. Policy.CountThrottles counts every throttled attempt into the request's
// metrics tally (shared/metrics), which the access log publishes.
package awsretry

import (
	"context"
	"errors"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/capifcore/capif-security/shared/metrics"
)

// transientCodes are the API error codes of DynamoDB, KMS and S3 that mean "cannot serve now,
// may soon", besides throttling (throttleCodes): internal and dependency failures, an
// unreachable key, a running transaction on the item.
var transientCodes = map[string]bool{
	"InternalServerError":            true,
	"InternalError":                  true,
	"InternalFailure":                true,
	"KMSInternalException":           true,
	"DependencyTimeoutException":     true,
	"KeyUnavailableException":        true,
	"ServiceUnavailable":             true,
	"ServiceUnavailableException":    true,
	"RequestTimeout":                 true,
	"RequestTimeoutException":        true,
	"TransactionConflictException":   true,
	"TransactionInProgressException": true,
}

// throttleCodes are the transient codes that mean "you are sending too much".
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"Throttling":                             true,
	"TooManyRequestsException":               true,
	"RequestLimitExceeded":                   true,
	"LimitExceededException":                 true,
	"SlowDown":                               true,
}

// Throttled reports whether err is AWS refusing the rate of requests: a throttling code or
// HTTP 429.
func Throttled(err error) bool {
	var (
		api    smithy.APIError
		status interface{ HTTPStatusCode() int }
	)
	switch {
	case errors.As(err, &api) && throttleCodes[api.ErrorCode()]:
		return true
	case errors.As(err, &status):
		return status.HTTPStatusCode() == 429
	}
	return false
}

// Transient reports whether err may succeed later, so the caller answers 503 (Retry-After)
// rather than 500: the deadline or a cancellation, retries exhausted on a retryable error, an
// empty retry token bucket, no answer at all (connection refused, reset, attempt timeout), a
// throttling or server-fault code, or an HTTP 429/5xx.
func Transient(err error) bool {
	if Throttled(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
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
		return status.HTTPStatusCode() >= 500
	}
	return false
}

// outageCodes are refusals that retrying the request cannot cure but that are no fault of the
// API's caller: the deployment is broken (a table or key missing or disabled, credentials or
// permissions wrong). The caller gets a 503 and the operator an ERROR line naming the cause.
var outageCodes = map[string]string{
	"ResourceNotFoundException":   "the table (or index) does not exist",
	"NotFoundException":           "the KMS key does not exist",
	"DisabledException":           "the KMS key is disabled",
	"KMSInvalidStateException":    "the KMS key is not usable in its current state",
	"AccessDeniedException":       "the function's role is not allowed to make the call",
	"UnrecognizedClientException": "the credentials are not valid",
	"InvalidSignatureException":   "the credentials' signature does not verify",
	"ExpiredTokenException":       "the credentials have expired",
	"MissingAuthenticationToken":  "no credentials were sent",
}

// CredentialsError is a failure to obtain AWS credentials (none configured, the role's endpoint
// unreachable): the SDK wraps it in plain text, so WrapCredentials marks it for Outage.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string { return "no usable AWS credentials: " + e.Err.Error() }
func (e *CredentialsError) Unwrap() error { return e.Err }

// WrapCredentials returns p with its failures as *CredentialsError (nil stays nil: anonymous).
func WrapCredentials(p aws.CredentialsProvider) aws.CredentialsProvider {
	if p == nil {
		return nil
	}
	return aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		c, err := p.Retrieve(ctx)
		if err != nil {
			return c, &CredentialsError{Err: err}
		}
		return c, nil
	})
}

// Outage reports whether err is a broken deployment rather than a bad request: no usable
// credentials, or one of outageCodes. cause says which, for the operator's log line.
func Outage(err error) (cause string, ok bool) {
	var sign *v4.SigningError
	var creds *CredentialsError
	var api smithy.APIError
	switch {
	case errors.As(err, &creds):
		return creds.Error(), true
	case errors.As(err, &sign):
		return "no usable AWS credentials (" + sign.Error() + ")", true
	case errors.As(err, &api):
		cause, ok = outageCodes[api.ErrorCode()]
		return cause, ok
	}
	return "", false
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
	// ThrottleMetric is the metric (shared/metrics) that counts the dependency's throttled
	// attempts; "" counts none.
	ThrottleMetric string
}

// The policy of each dependency. A request path pays at most WorstCase per call; docs/dynamodb.md
// sums them per operation, and a test keeps each sum below the functions' Timeout minus the
// deadline margin (template.yaml).
var (
	DynamoDB = Policy{Name: "DynamoDB", Attempts: 3, AttemptTimeout: time.Second, MaxBackoff: 100 * time.Millisecond, ThrottleMetric: metrics.DynamoDBThrottles}
	KMS      = Policy{Name: "KMS", Attempts: 3, AttemptTimeout: time.Second, MaxBackoff: 100 * time.Millisecond, ThrottleMetric: metrics.KMSThrottles}
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

// CountThrottles is an SDK API option (append it to the client's APIOptions): every attempt
// that ends Throttled, retried or not, adds one to p.ThrottleMetric in the request's metrics
// tally (metrics.Add through the call's context; nothing outside a request).
func (p Policy) CountThrottles(stack *middleware.Stack) error {
	if p.ThrottleMetric == "" {
		return nil
	}
	count := middleware.FinalizeMiddlewareFunc("CountThrottles", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleFinalize(ctx, in)
		if err != nil && Throttled(err) {
			metrics.Add(ctx, p.ThrottleMetric, 1)
		}
		return out, md, err
	})
	// After the retry middleware: it runs once per attempt.
	if _, ok := stack.Finalize.Get("Retry"); ok {
		return stack.Finalize.Insert(count, "Retry", middleware.After)
	}
	return stack.Finalize.Add(count, middleware.After)
}

// NoteThrottle counts one throttling that reached the caller without an error (DynamoDB's
// UnprocessedKeys, a transaction cancelled for throttling).
func (p Policy) NoteThrottle(ctx context.Context) {
	if p.ThrottleMetric != "" {
		metrics.Add(ctx, p.ThrottleMetric, 1)
	}
}
