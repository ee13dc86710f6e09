// Package app wires the domain to its adapters from one configuration, so the local runner, the
// admin command and every Lambda function build the service the same way.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// Config is what Open wires: the settings (settings.Load) and the process's own parts.
type Config struct {
	Settings settings.Config
	// ClientCA returns the PEM of the CAs that verify invoker certificates (PKI
	// authenticationInfo); a function reads it from its lazily loaded truststore.
	ClientCA func(context.Context) (string, error)
	Logger   *slog.Logger
	// AWS is the process's one SDK configuration, built on first use (sdkconfig.Provider's Get);
	// nil: this process has none, and AWS back ends are refused.
	AWS func() (aws.Config, error)
	// CCF is this process's identity towards AEFs (notify.Options); nil: it has none, and
	// AEFPush says what becomes of pushes.
	CCF func(context.Context) (notify.CCFIdentity, error)
	// AEFPush is what revocations owe AEFs in this process (security.Config).
	AEFPush security.AEFPush
	// Backends are the adapters this process links (the signer "none" is always there); Open
	// refuses a store or signer setting none of them is named for. A Lambda binary names only
	// DynamoDB (and KMS where it signs), so it carries neither the embedded store nor the local
	// key; the runner and the admin command name every one (shared/app/fullapp).
	Backends []Backend
}

// Backend is one adapter Open can build, under the setting value that selects it (Name: a
// settings.Store* or settings.Signer* value). Exactly one of Store, Signer and CCF is set.
type Backend struct {
	Name   string
	Store  func(ctx context.Context, in Input) (StoreAdapter, error)
	Signer func(ctx context.Context, in Input) (security.Signer, error)
	// CCF makes the CCF's client certificate towards AEFs from its PEM chain with its key in KMS
	// (kmsapp.CCF): linked only where revocations are pushed from a Lambda function.
	CCF func(awsCfg aws.Config, keyRef, name string, chainPEM []byte) (*tls.Certificate, error)
}

// Input is what a Backend builds its adapter from.
type Input struct {
	Settings settings.Config
	Logger   *slog.Logger
	// AWS returns the process's one SDK configuration (built on first use).
	AWS func() (aws.Config, error)
	// KeySet is the store's key set (for the signers).
	KeySet security.KeySet
}

// StoreAdapter is a built store: the Store and Registry ports (one adapter serves both) and what
// releases it (nil: nothing to release).
type StoreAdapter struct {
	Store    security.Store
	Registry security.Registry
	KeySet   security.KeySet
	Close    func() error
}

// App is the wired service and the adapters behind it.
type App struct {
	Service  *security.Service
	Store    security.Store
	Registry security.Registry
	KeySet   security.KeySet
	closers  []func() error
}

// Close releases the adapters (the embedded store's file lock).
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}

// Open builds the adapters named in cfg's settings (as settings.Load resolved them) and the
// service on them. It makes no network call, unless the CreateTables setting asks for the
// DynamoDB tables to be created.
func Open(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	set := cfg.Settings
	a := &App{}
	in := Input{Settings: set, Logger: cfg.Logger, AWS: cfg.AWS}
	if in.AWS == nil {
		in.AWS = func() (aws.Config, error) { return aws.Config{}, errors.New("this process has no AWS configuration") }
	}
	b, ok := backend(cfg.Backends, set.Store, true)
	if !ok {
		return nil, fmt.Errorf("store %q is not available in this process (want one of %s)", set.Store, strings.Join(names(cfg.Backends, true), ", "))
	}
	st, err := b.Store(ctx, in)
	if err != nil {
		return nil, err
	}
	a.Store, a.Registry, a.KeySet = st.Store, st.Registry, st.KeySet
	in.KeySet = st.KeySet
	if st.Close != nil {
		a.closers = append(a.closers, st.Close)
	}
	var sig security.Signer = noSigner{}
	if set.Signer != settings.SignerNone {
		b, ok := backend(cfg.Backends, set.Signer, false)
		if !ok {
			_ = a.Close()
			return nil, fmt.Errorf("signer %q is not available in this process (want one of %s)", set.Signer, strings.Join(append(names(cfg.Backends, false), settings.SignerNone), ", "))
		}
		if sig, err = b.Signer(ctx, in); err != nil {
			_ = a.Close()
			return nil, err
		}
	}
	n := notify.New(notify.Options{AllowLoopback: set.AllowLoopbackNotifications, Timeout: set.NotifyTimeout, Logger: cfg.Logger,
		CCF: cfg.CCF})
	a.Service = security.New(a.Store, a.Registry, sig, n, security.SystemClock{}, security.Config{
		Issuer:         set.Issuer,
		MethodPriority: set.SecurityMethodPriority,
		TokenTTL:       set.TokenTTL,
		RetryBase:      set.RetryBase,
		RetryCap:       set.RetryCap,
		RetryWindow:    set.RetryWindow,
		ClaimLease:     set.ClaimLease,
		OnDelivery:     countDelivery,
		APIRoot:        set.APIRoot,
		ClientCA:       cfg.ClientCA,
		CCFName:        set.CCFName,
		AEFPush:        cfg.AEFPush,
		Logger:         cfg.Logger,
	})
	return a, nil
}

// KeyRotation is the work of the rotation function (envelope.Manager's Scheduled): named here
// so that lambdaapp, which every function links, does not link the signers.
type KeyRotation interface {
	Scheduled(ctx context.Context, age time.Duration) (published string, pruned bool, err error)
}

// KeyWindows are the key set's windows of the deployment set describes: its refresh period
// and token lifetime, and the JWKS max-age the CCF serves.
func KeyWindows(set settings.Config) security.KeyWindows {
	return security.KeyWindows{Refresh: set.KeySetRefresh, JWKSMaxAge: capif.JWKSMaxAge, TokenLifetime: set.TokenTTL}
}

// backend is the store (or signer) backend of that name.
func backend(bs []Backend, name string, store bool) (Backend, bool) {
	for _, b := range bs {
		if b.Name == name && (store && b.Store != nil || !store && b.Signer != nil) {
			return b, true
		}
	}
	return Backend{}, false
}

// names lists the store (or signer) backends, for the error naming what a setting may be.
func names(bs []Backend, store bool) []string {
	var out []string
	for _, b := range bs {
		if store && b.Store != nil || !store && b.Signer != nil {
			out = append(out, b.Name)
		}
	}
	return out
}

// noSigner is the Signer of tools that never issue tokens.
type noSigner struct{}

func (noSigner) Sign(context.Context, capif.TokenClaims) (string, error) {
	return "", errors.New("this process does not sign tokens")
}

func (noSigner) JWKS(context.Context) (capif.JWKSet, error) {
	return capif.JWKSet{}, errors.New("this process does not sign tokens")
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

// BacklogMetrics are the gauges of a delivery run's line: the outbox's backlog and, once known,
// the days left on the CCF's certificate.
func BacklogMetrics(b security.Backlog, ccfDaysLeft *float64) []metrics.Metric {
	ms := []metrics.Metric{
		metrics.Count(metrics.OutboxPendingInvoker, b.PendingInvoker),
		{Name: metrics.OutboxOldestInvokerSeconds, Unit: metrics.UnitSeconds, Value: b.OldestInvoker.Seconds()},
		metrics.Count(metrics.OutboxPendingAEF, b.PendingAEF),
		{Name: metrics.OutboxOldestAEFSeconds, Unit: metrics.UnitSeconds, Value: b.OldestAEF.Seconds()},
		metrics.Count(metrics.OutboxDeadLetters, b.DeadLetters),
	}
	if ccfDaysLeft != nil {
		ms = append(ms, metrics.Metric{Name: metrics.CcfCertificateDaysLeft, Unit: metrics.UnitNone, Value: *ccfDaysLeft})
	}
	return ms
}
