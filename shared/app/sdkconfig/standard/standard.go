// Package standard is the full AWS SDK configuration of the runner and capif-admin
// (aws-sdk-go-v2/config: environment, shared files and profiles, SSO, the credential chain),
// beside sdkconfig.FromEnv, the Lambda functions' lean one.
package standard

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/app/sdkconfig"
)

// Load loads the standard SDK configuration (environment, shared files and profiles, SSO;
// endpoints such as AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_KMS), then sdkconfig.Finish. It
// makes no network call. Each adapter gives its client its dependency's retry policy
// (shared/awsretry).
func Load(ctx context.Context, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) (aws.Config, error) {
	c, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	sdkconfig.Finish(&c, logger, apiOptions)
	return c, nil
}

// Provider is the lazy provider of Load's configuration.
func Provider(ctx context.Context, logger *slog.Logger) *sdkconfig.Provider {
	return sdkconfig.NewProvider(func() (aws.Config, error) { return Load(ctx, logger, nil) })
}
