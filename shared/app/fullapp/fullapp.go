// Package fullapp is every back end of the service (the embedded store, the local signer,
// DynamoDB, KMS) and the standard SDK configuration (sdkconfig/standard): what the
// local runner and the admin command link. Lambda binaries name their few back ends instead
// (shared/lambdaapp).
package fullapp

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/dynamoapp"
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/app/sdkconfig/standard"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/local"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// Embedded is the embedded store (settings.StoreEmbedded): DataDir/capif.db, locked while open.
var Embedded = app.Backend{Name: settings.StoreEmbedded, Store: openEmbedded}

// Local is the local signer (settings.SignerLocal): DataDir/signing-key.pem, created if absent.
var Local = app.Backend{Name: settings.SignerLocal, Signer: openLocal}

// Backends are all of them.
var Backends = []app.Backend{Embedded, dynamoapp.Backend, Local, kmsapp.Backend}

// Open is app.Open with every back end, on the standard SDK configuration (built on first use)
// unless cfg names the process's own.
func Open(ctx context.Context, cfg app.Config) (*app.App, error) {
	cfg.Backends = Backends
	if cfg.AWS == nil {
		cfg.AWS = standard.Provider(ctx, cfg.Logger).Get
	}
	return app.Open(ctx, cfg)
}

func openEmbedded(_ context.Context, in app.Input) (app.StoreAdapter, error) {
	db, err := embedded.Open(filepath.Join(in.Settings.DataDir, "capif.db")) // creates the directory
	if errors.Is(err, berrors.ErrTimeout) {
		// The one thing to tell whoever runs the runner or capif-admin: what holds the file.
		return app.StoreAdapter{}, fmt.Errorf("another process holds the data directory %s (a running capif-local, or capif-admin on it?): stop it, or use another data directory: %w", in.Settings.DataDir, err)
	}
	if err != nil {
		return app.StoreAdapter{}, err
	}
	return app.StoreAdapter{Store: db, Registry: db, Close: db.Close}, nil
}

func openLocal(_ context.Context, in app.Input) (security.Signer, error) {
	return local.LoadOrCreate(filepath.Join(in.Settings.DataDir, "signing-key.pem"))
}
