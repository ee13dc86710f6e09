// Package sdkconfig is the standard AWS SDK configuration of the runner and the admin command
// (aws-sdk-go-v2/config: environment, shared files and profiles, SSO, the credential chain).
// Lambda binaries build a leaner one from their environment (shared/lambdaapp).
package sdkconfig

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/awsretry"
)

// Load loads the standard SDK configuration (environment, shared files and profiles,
// SSO; endpoints such as AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_KMS) with slog logging and
// apiOptions on every client. It makes no network call. Each adapter gives its client its
// dependency's retry policy (shared/awsretry).
func Load(ctx context.Context, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) (aws.Config, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(app.SDKLogger(logger)))
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	c.APIOptions = append(c.APIOptions, apiOptions...)
	// A missing credential is a broken deployment: 503 with an ERROR line (awsretry.Outage).
	c.Credentials = awsretry.WrapCredentials(c.Credentials)
	return c, nil
}
