package awsretry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/capifcore/capif-security/shared/awsretry"
)

func TestTransient(t *testing.T) {
	api := func(code string, fault smithy.ErrorFault) error {
		return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "PutItem", Err: &smithy.GenericAPIError{Code: code, Fault: fault}}
	}
	status := func(code int) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("x")}}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"throughput exceeded", &types.ProvisionedThroughputExceededException{}, true},
		{"throttling", api("ThrottlingException", smithy.FaultClient), true},
		{"request limit", &types.RequestLimitExceeded{}, true},
		{"internal server error", &types.InternalServerError{}, true},
		{"transaction conflict", &types.TransactionConflictException{}, true},
		{"unknown server fault", api("Whatever", smithy.FaultServer), true},
		{"retries exhausted", &retry.MaxAttemptsError{Attempt: 4, Err: errors.New("x")}, true},
		{"retry quota", fmt.Errorf("get token: %w", ratelimit.QuotaExceededError{}), true},
		{"deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), true},
		{"connection refused", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}, true},
		{"HTTP 503", status(503), true},
		{"HTTP 429", status(429), true},
		{"KMS throttled", &kmstypes.KMSInternalException{}, true},
		{"KMS key unavailable", &kmstypes.KeyUnavailableException{}, true},
		{"KMS disabled key", &kmstypes.DisabledException{}, false},
		{"S3 slow down", api("SlowDown", smithy.FaultClient), true},
		{"S3 access denied", api("AccessDenied", smithy.FaultClient), false},
		{"canceled", context.Canceled, true},
		{"validation", api("ValidationException", smithy.FaultClient), false},
		{"access denied", api("AccessDeniedException", smithy.FaultClient), false},
		{"missing table", &types.ResourceNotFoundException{}, false},
		{"condition failed", &types.ConditionalCheckFailedException{}, false},
		{"HTTP 400", status(400), false},
		{"plain error", errors.New("x"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := awsretry.Transient(tc.err); got != tc.want {
				t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	p := awsretry.Policy{Attempts: 3, AttemptTimeout: time.Second, MaxBackoff: 200 * time.Millisecond}
	if got := p.WorstCase(); got != 3400*time.Millisecond {
		t.Errorf("WorstCase = %v, want 3 × 1 s + 2 × 200 ms", got)
	}
	if got := p.Retryer().MaxAttempts(); got != 3 {
		t.Errorf("retryer attempts %d", got)
	}
	c, ok := p.HTTPClient(awshttp.NewBuildableClient()).(*awshttp.BuildableClient)
	if !ok || c.GetTimeout() != time.Second {
		t.Errorf("HTTP client %T with timeout %v, want the attempt timeout", c, c.GetTimeout())
	}
	if c, ok := p.HTTPClient(nil).(*awshttp.BuildableClient); !ok || c.GetTimeout() != time.Second {
		t.Error("no default client with the attempt timeout")
	}
	other := http.DefaultClient
	if p.HTTPClient(other) != other {
		t.Error("a caller's own client was replaced")
	}
	for _, p := range []awsretry.Policy{awsretry.DynamoDB, awsretry.KMS, awsretry.S3} {
		if p.Name == "" || p.Attempts < 1 || p.AttemptTimeout <= 0 || p.MaxBackoff <= 0 {
			t.Errorf("incomplete policy %+v", p)
		}
	}
}
