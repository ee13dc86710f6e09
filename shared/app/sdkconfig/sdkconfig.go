// Package sdkconfig is a process's one AWS SDK configuration, built lazily (Provider) by one of
// two builders side by side: FromEnv, the Lambda functions' lean one from the variables Lambda
// sets, and standard.Load (sdkconfig/standard), aws-sdk-go-v2/config's full one for the runner
// and capif-admin. Both end in Finish, so every client logs through slog, carries the process's
// API options and marks a missing credential for awsretry.Outage. Neither makes a network call.
//
// FromEnv stands for config.LoadDefaultConfig, whose shared files, profiles, SSO, STS and IMDS a
// Lambda function never uses and whose code is about 1.9 MB of every bootstrap: this package
// does not import aws-sdk-go-v2/config, the standard subpackage does.
package sdkconfig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/awsretry"
)

// Provider is the process's SDK configuration, built by its builder on first use and kept
// (a failed build too: it is a configuration error, not a passing one).
type Provider struct {
	build func() (aws.Config, error)
	once  sync.Once
	cfg   aws.Config
	err   error
}

// NewProvider is the provider of what build builds.
func NewProvider(build func() (aws.Config, error)) *Provider { return &Provider{build: build} }

// Get builds the configuration the first time and returns it.
func (p *Provider) Get() (aws.Config, error) {
	p.once.Do(func() { p.cfg, p.err = p.build() })
	return p.cfg, p.err
}

// Finish is the step both builders end with: SDK log lines through logger (slog.Default when
// nil), apiOptions on every client, and credentials whose failure is marked for awsretry.Outage
// (a 503 with an ERROR line).
func Finish(c *aws.Config, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) {
	if logger == nil {
		logger = slog.Default()
	}
	c.Logger = SDKLogger(logger)
	c.APIOptions = append(c.APIOptions, apiOptions...)
	c.Credentials = awsretry.WrapCredentials(c.Credentials)
}

// FromEnv is a Lambda function's SDK configuration, from the variables Lambda sets (and the
// tests set): the Region (AWS_REGION, else AWS_DEFAULT_REGION), the role's credentials
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and the endpoint overrides
// (AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL), then Finish.
func FromEnv(getenv func(string) string, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) aws.Config {
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	var creds aws.CredentialsProvider = credentials.NewStaticCredentialsProvider(
		getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN"))
	if getenv("AWS_ACCESS_KEY_ID") == "" || getenv("AWS_SECRET_ACCESS_KEY") == "" {
		creds = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
		})
	}
	c := aws.Config{Region: region, Credentials: creds, ConfigSources: []any{envEndpoints{getenv}}}
	if e := Endpoint(getenv, ""); e != "" {
		c.BaseEndpoint = &e
	}
	Finish(&c, logger, apiOptions)
	return c
}

// envEndpoints gives each client its AWS_ENDPOINT_URL_<SERVICE> override: the clients ask their
// aws.Config's ConfigSources for a GetServiceBaseEndpoint method, as they ask config's.
type envEndpoints struct{ getenv func(string) string }

func (e envEndpoints) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	if strings.EqualFold(e.getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return "", false, nil
	}
	v := e.getenv("AWS_ENDPOINT_URL_" + strings.ToUpper(strings.ReplaceAll(sdkID, " ", "_")))
	return v, v != "", nil
}

// Endpoint is the endpoint override of the service whose environment name is service (S3, …;
// "": the global AWS_ENDPOINT_URL only), as its client would read it; none when
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true.
func Endpoint(getenv func(string) string, service string) string {
	if strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return ""
	}
	if service != "" {
		if e := getenv("AWS_ENDPOINT_URL_" + service); e != "" {
			return e
		}
	}
	return getenv("AWS_ENDPOINT_URL")
}

// SDKLogger routes the AWS SDK's own log lines (warnings, opt-in debug) through slog, so a
// process's output stays one JSON object per line.
func SDKLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		level := slog.LevelInfo
		switch c {
		case logging.Warn:
			level = slog.LevelWarn
		case logging.Debug:
			level = slog.LevelDebug
		}
		l.Log(context.Background(), level, fmt.Sprintf(format, v...), slog.String("source", "aws-sdk"))
	})
}
