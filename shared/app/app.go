// Package app wires the domain to its adapters from one configuration, so the local runner, the
// admin command and every Lambda function build the service the same way.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/kms"
	"github.com/capifcore/capif-security/shared/signer/local"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// Config is what Open wires: the settings (settings.Load) and the process's own parts.
type Config struct {
	Settings settings.Config
	// ClientCA returns the PEM of the CAs that verify invoker certificates (PKI
	// authenticationInfo); a function reads it from its lazily loaded truststore.
	ClientCA func(context.Context) (string, error)
	Logger   *slog.Logger
	// AWS is an SDK configuration the caller already loaded (LoadAWSConfig), so a process
	// loads it once; nil: loaded here when an AWS adapter is wanted.
	AWS *aws.Config
	// AWSAPIOptions are added to every AWS client when AWS is nil (tests count or fail requests
	// with them).
	AWSAPIOptions []func(*middleware.Stack) error
}

// App is the wired service and the adapters behind it.
type App struct {
	Service  *security.Service
	Store    security.Store
	Registry security.Registry
	closers  []func() error
	awsCfg   *aws.Config
}

// aws returns the SDK configuration of this App's clients: the one the caller loaded
// (cfg.AWS), or one loaded here, once.
func (a *App) aws(ctx context.Context, cfg Config) (aws.Config, error) {
	if a.awsCfg == nil && cfg.AWS != nil {
		a.awsCfg = cfg.AWS
	}
	if a.awsCfg != nil {
		return *a.awsCfg, nil
	}
	c, err := LoadAWSConfig(ctx, cfg.Logger, cfg.AWSAPIOptions)
	if err != nil {
		return aws.Config{}, err
	}
	a.awsCfg = &c
	return c, nil
}

// LoadAWSConfig loads the standard SDK configuration (environment, shared files; endpoints such
// as AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_KMS) with slog logging and apiOptions on every
// client. It makes no network call. Each adapter gives its client its dependency's retry policy
// (shared/awsretry).
func LoadAWSConfig(ctx context.Context, logger *slog.Logger, apiOptions []func(*middleware.Stack) error) (aws.Config, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(SDKLogger(logger)))
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	c.APIOptions = append(c.APIOptions, apiOptions...)
	// A missing credential is a broken deployment: 503 with an ERROR line (awsretry.Outage).
	c.Credentials = awsretry.WrapCredentials(c.Credentials)
	return c, nil
}

// Close releases the adapters (the embedded store's file lock).
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}

// Open builds the adapters named in cfg and the service on them. It makes no network call,
// unless the CreateTables setting asks for the DynamoDB tables to be created. The iss claim is
// the Issuer setting, else the APIRoot.
func Open(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	set := cfg.Settings
	a := &App{}
	var sig security.Signer
	switch set.Store {
	case settings.StoreEmbedded, "":
		if err := os.MkdirAll(set.DataDir, 0o700); err != nil {
			return nil, err
		}
		db, err := embedded.Open(filepath.Join(set.DataDir, "capif.db"))
		if err != nil {
			return nil, err
		}
		a.Store, a.Registry = db, db
		a.closers = append(a.closers, db.Close)
	case settings.StoreDynamoDB:
		awsCfg, err := a.aws(ctx, cfg)
		if err != nil {
			return nil, err
		}
		st, err := ddbstore.New(awsCfg, ddbstore.Options{Tables: set.Tables, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		if set.CreateTables {
			if err := st.CreateTables(ctx); err != nil {
				return nil, fmt.Errorf("creating DynamoDB tables: %w", err)
			}
		}
		a.Store, a.Registry = st, st
	default:
		return nil, fmt.Errorf("unknown store %q (want %s or %s)", set.Store, settings.StoreEmbedded, settings.StoreDynamoDB)
	}
	switch set.Signer {
	case settings.SignerLocal, "":
		s, err := local.LoadOrCreate(filepath.Join(set.DataDir, "signing-key.pem"))
		if err != nil {
			_ = a.Close()
			return nil, err
		}
		sig = s
	case settings.SignerNone:
		sig = noSigner{}
	case settings.SignerKMS:
		awsCfg, err := a.aws(ctx, cfg)
		if err != nil {
			_ = a.Close()
			return nil, err
		}
		s, err := kms.NewFromConfig(awsCfg, set.KMSKeyIDs)
		if err != nil {
			_ = a.Close()
			return nil, err
		}
		sig = s
	default:
		_ = a.Close()
		return nil, fmt.Errorf("unknown signer %q (want %s, %s or %s)", set.Signer, settings.SignerLocal, settings.SignerKMS, settings.SignerNone)
	}
	issuer := set.Issuer
	if issuer == "" {
		issuer = set.APIRoot
	}
	n := notify.New(notify.Options{AllowLoopback: set.AllowLoopbackNotifications, Logger: cfg.Logger})
	a.Service = security.New(a.Store, a.Registry, sig, n, security.SystemClock{}, security.Config{
		Issuer:      issuer,
		TokenTTL:    set.TokenTTL,
		RetryBase:   set.RetryBase,
		RetryCap:    set.RetryCap,
		RetryWindow: set.RetryWindow,
		ClaimLease:  set.ClaimLease,
		OnDelivery:  countDelivery,
		APIRoot:     set.APIRoot,
		ClientCA:    cfg.ClientCA,
		Logger:      cfg.Logger,
	})
	return a, nil
}

// noSigner is the Signer of tools that never issue tokens.
type noSigner struct{}

func (noSigner) Sign(context.Context, security.TokenClaims) (string, error) {
	return "", errors.New("this process does not sign tokens")
}

func (noSigner) JWKS(context.Context) (security.JWKSet, error) {
	return security.JWKSet{}, errors.New("this process does not sign tokens")
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

// deliveryMetrics names the metric of each delivery outcome.
var deliveryMetrics = map[security.DeliveryOutcome]string{
	security.Delivered:    metrics.NotificationsDelivered,
	security.Retried:      metrics.NotificationsRetried,
	security.DeadLettered: metrics.NotificationsDeadLettered,
}

// countDelivery counts an outcome into the tally of the request or delivery run that made the
// attempt (the access log, or the worker's run line, publishes it).
func countDelivery(ctx context.Context, o security.DeliveryOutcome) {
	metrics.Add(ctx, deliveryMetrics[o], 1)
}
