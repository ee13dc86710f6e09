package sdkconfig

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go/logging"

	"github.com/capifcore/capif-security/shared/awsretry"
)

func TestAWSConfigFromEnv(t *testing.T) {
	// The clients also look AWS_ENDPOINT_URL up in the process environment itself.
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "")
	env := map[string]string{
		"AWS_DEFAULT_REGION":        "eu-west-1",
		"AWS_ACCESS_KEY_ID":         "AKID",
		"AWS_SECRET_ACCESS_KEY":     "secret",
		"AWS_SESSION_TOKEN":         "token",
		"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000",
		"AWS_ENDPOINT_URL_KMS":      "http://127.0.0.1:8001",
		"AWS_ENDPOINT_URL_S3":       "http://127.0.0.1:8002",
	}
	getenv := func(k string) string { return env[k] }
	c := FromEnv(getenv, slog.New(slog.DiscardHandler), nil)
	if c.Region != "eu-west-1" {
		t.Errorf("Region %q, want AWS_DEFAULT_REGION's", c.Region)
	}
	creds, err := c.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKID" || creds.SecretAccessKey != "secret" || creds.SessionToken != "token" {
		t.Errorf("credentials %+v, %v", creds, err)
	}
	if ep := aws.ToString(dynamodb.NewFromConfig(c).Options().BaseEndpoint); ep != "http://127.0.0.1:8000" {
		t.Errorf("DynamoDB endpoint %q", ep)
	}
	if ep := aws.ToString(kms.NewFromConfig(c).Options().BaseEndpoint); ep != "http://127.0.0.1:8001" {
		t.Errorf("KMS endpoint %q", ep)
	}
	if ep := Endpoint(getenv, "S3"); ep != "http://127.0.0.1:8002" {
		t.Errorf("S3 endpoint %q", ep)
	}
	env["AWS_REGION"] = "eu-central-1"
	if c := FromEnv(getenv, nil, nil); c.Region != "eu-central-1" {
		t.Errorf("Region %q, want AWS_REGION's first", c.Region)
	}
	env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
	if ep := kms.NewFromConfig(FromEnv(getenv, nil, nil)).Options().BaseEndpoint; ep != nil || Endpoint(getenv, "S3") != "" {
		t.Errorf("endpoints kept although ignored: %q %q", aws.ToString(ep), Endpoint(getenv, "S3"))
	}
	env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = ""
	env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9000"
	delete(env, "AWS_ENDPOINT_URL_S3")
	if c := FromEnv(getenv, nil, nil); aws.ToString(c.BaseEndpoint) != "http://127.0.0.1:9000" || Endpoint(getenv, "S3") != "http://127.0.0.1:9000" {
		t.Errorf("AWS_ENDPOINT_URL not applied: %q %q", aws.ToString(c.BaseEndpoint), Endpoint(getenv, "S3"))
	}
	// No credentials: a broken deployment (503 with an ERROR line), not a bad request.
	delete(env, "AWS_SECRET_ACCESS_KEY")
	_, err = FromEnv(getenv, nil, nil).Credentials.Retrieve(context.Background())
	if _, ok := awsretry.Outage(err); !ok {
		t.Errorf("missing credentials: %v is not an outage", err)
	}
}

// The SDK's own log lines become JSON with the right level.
func TestSDKLogger(t *testing.T) {
	var buf strings.Builder
	l := SDKLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Logf(logging.Warn, "failed to close HTTP response body, %d", 7)
	l.Logf(logging.Debug, "retrying")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var first, second map[string]any
	if json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("not JSON: %s", buf.String())
	}
	if first["level"] != "WARN" || first["msg"] != "failed to close HTTP response body, 7" || first["source"] != "aws-sdk" || second["level"] != "DEBUG" {
		t.Errorf("%v %v", first, second)
	}
}
