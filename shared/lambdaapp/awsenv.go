package lambdaapp

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/awsretry"
)

// awsConfigFromEnv is a function's SDK configuration, from the variables Lambda sets (and the
// tests set): the Region (AWS_REGION, else AWS_DEFAULT_REGION), the role's credentials
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and the endpoint overrides
// (AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL). It stands for aws-sdk-go-v2/config's
// LoadDefaultConfig, whose shared files, profiles, SSO, STS and IMDS a Lambda function never uses
// and whose code is about a megabyte of every bootstrap; the runner and capif-admin keep it
// (sdkconfig). Like sdkconfig.Load: slog SDK logging, apiOptions on every client, credential
// failures marked for awsretry.Outage (a 503 with an ERROR line), and no network call.
func awsConfigFromEnv(getenv func(string) string, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) aws.Config {
	if logger == nil {
		logger = slog.Default()
	}
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
	c := aws.Config{
		Region:        region,
		Credentials:   awsretry.WrapCredentials(creds),
		Logger:        app.SDKLogger(logger),
		APIOptions:    append([]func(*middleware.Stack) error(nil), apiOptions...),
		ConfigSources: []any{envEndpoints{getenv}},
	}
	if e := endpoint(getenv, ""); e != "" {
		c.BaseEndpoint = &e
	}
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

// s3Endpoint is the S3 endpoint override (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL), read as
// the S3 client would.
func s3Endpoint(getenv func(string) string) string {
	return endpoint(getenv, "S3")
}

// endpoint is the endpoint override of the service whose environment name is service ("": the
// global AWS_ENDPOINT_URL only); none when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true.
func endpoint(getenv func(string) string, service string) string {
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
