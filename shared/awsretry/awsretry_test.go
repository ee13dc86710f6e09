package awsretry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/metrics"
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

func TestThrottled(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"throughput exceeded", &types.ProvisionedThroughputExceededException{}, true},
		{"throttling", &smithy.GenericAPIError{Code: "ThrottlingException"}, true},
		{"kms throttling wrapped", fmt.Errorf("kms Sign: %w", &smithy.OperationError{Err: &smithy.GenericAPIError{Code: "ThrottlingException"}}), true},
		{"HTTP 429", &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 429}}, Err: errors.New("x")}}, true},
		{"internal error: transient, not a throttle", &types.InternalServerError{}, false},
		{"HTTP 503", &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 503}}, Err: errors.New("x")}}, false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := awsretry.Throttled(tt.err); got != tt.want {
			t.Errorf("%s: Throttled = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// answers is an HTTP client that answers DynamoDB calls from a script, one answer per attempt.
type answers struct{ script []int }

func (a *answers) Do(*http.Request) (*http.Response, error) {
	code := a.script[0]
	a.script = a.script[1:]
	body := `{}`
	if code == 400 {
		body = `{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"rate exceeded"}`
	}
	return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}, nil
}

// Every throttled attempt is counted, the ones the retryer absorbed too, and only in the
// tally of the request that made the call.
func TestCountThrottles(t *testing.T) {
	tests := []struct {
		script    []int
		want      int
		wantError bool
	}{
		{[]int{200}, 0, false},
		{[]int{400, 200}, 1, false},
		{[]int{400, 400, 400}, 3, true},
	}
	for _, tt := range tests {
		client := dynamodb.New(dynamodb.Options{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
			HTTPClient:  &answers{script: tt.script},
			Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = awsretry.DynamoDB.Attempts
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			}),
			APIOptions: []func(*middleware.Stack) error{awsretry.DynamoDB.CountThrottles},
		})
		ctx, tally := metrics.WithCounts(context.Background())
		_, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"),
			Key: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "v"}}})
		if (err != nil) != tt.wantError {
			t.Fatalf("%v: GetItem: %v", tt.script, err)
		}
		var got []metrics.Metric
		if tt.want > 0 {
			got = []metrics.Metric{metrics.Count(metrics.DynamoDBThrottles, tt.want)}
		}
		if m := tally.Metrics(); !slices.Equal(m, got) {
			t.Errorf("%v: tally %v, want %v", tt.script, m, got)
		}
	}
	ctx, tally := metrics.WithCounts(context.Background())
	awsretry.KMS.NoteThrottle(ctx)
	awsretry.S3.NoteThrottle(ctx) // S3 has no throttle metric
	if m := tally.Metrics(); !slices.Equal(m, []metrics.Metric{metrics.Count(metrics.KMSThrottles, 1)}) {
		t.Errorf("NoteThrottle: tally %v", m)
	}
}

// A broken deployment is an outage (503 + an ERROR line naming the cause), not a 500; a bad
// request or a lost condition is not.
func TestOutage(t *testing.T) {
	api := func(code string) error {
		return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "GetItem", Err: &smithy.GenericAPIError{Code: code, Fault: smithy.FaultClient}}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{api("ResourceNotFoundException"), true},
		{api("AccessDeniedException"), true},
		{api("UnrecognizedClientException"), true},
		{api("DisabledException"), true},
		{&awsretry.CredentialsError{Err: errors.New("no role")}, true},
		{fmt.Errorf("get identity: %w", &awsretry.CredentialsError{Err: errors.New("no role")}), true},
		{api("ValidationException"), false},
		{api("ConditionalCheckFailedException"), false},
		{errors.New("plain"), false},
	} {
		if _, got := awsretry.Outage(tc.err); got != tc.want {
			t.Errorf("awsretry.Outage(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	p := awsretry.WrapCredentials(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return aws.Credentials{}, errors.New("none") }))
	if _, err := p.Retrieve(context.Background()); !errors.As(err, new(*awsretry.CredentialsError)) {
		t.Errorf("WrapCredentials: %v", err)
	}
	if awsretry.WrapCredentials(nil) != nil {
		t.Error("awsretry.WrapCredentials(nil) must stay nil (anonymous)")
	}
}
