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
	"time"

	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/local"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// Back ends.
const (
	StoreEmbedded = "embedded"
	StoreDynamoDB = "dynamodb"
	SignerLocal   = "local"
	SignerKMS     = "kms"
)

// Config selects and configures the adapters.
type Config struct {
	Store        string // embedded | dynamodb
	Signer       string // local | kms
	DataDir      string // embedded store and local signing key
	KMSKeyIDs    []string
	TablePrefix  string
	CreateTables bool // create missing DynamoDB tables at start (local runs)
	CCFID        string
	TokenTTL     time.Duration
	APIRoot      string
	ClientCAPEM  string
	// AllowLoopbackNotifications lets notifications reach 127.0.0.1/::1 (local runner only).
	AllowLoopbackNotifications bool
	Logger                     *slog.Logger
}

// App is the wired service and the adapters behind it.
type App struct {
	Service  *security.Service
	Store    security.Store
	Registry security.Registry
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

// Open builds the adapters named in cfg and the service on them. It makes no network call.
func Open(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &App{}
	var sig security.Signer
	switch cfg.Store {
	case StoreEmbedded, "":
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		db, err := embedded.Open(filepath.Join(cfg.DataDir, "capif.db"))
		if err != nil {
			return nil, err
		}
		a.Store, a.Registry = db, db
		a.closers = append(a.closers, db.Close)
	default:
		return nil, fmt.Errorf("unknown store %q (want %s or %s)", cfg.Store, StoreEmbedded, StoreDynamoDB)
	}
	switch cfg.Signer {
	case SignerLocal, "":
		s, err := local.LoadOrCreate(filepath.Join(cfg.DataDir, "signing-key.pem"))
		if err != nil {
			_ = a.Close()
			return nil, err
		}
		sig = s
	default:
		_ = a.Close()
		return nil, fmt.Errorf("unknown signer %q (want %s or %s)", cfg.Signer, SignerLocal, SignerKMS)
	}
	n := notify.New(notify.Options{AllowLoopback: cfg.AllowLoopbackNotifications, Logger: cfg.Logger})
	a.Service = security.New(a.Store, a.Registry, sig, n, security.SystemClock{}, security.Config{
		Issuer:      cfg.CCFID,
		TokenTTL:    cfg.TokenTTL,
		APIRoot:     cfg.APIRoot,
		ClientCAPEM: cfg.ClientCAPEM,
		Logger:      cfg.Logger,
	})
	return a, nil
}
