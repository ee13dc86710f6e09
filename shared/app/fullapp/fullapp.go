// Package fullapp is every back end of the service (the embedded store, the local signer,
// DynamoDB, KMS) and the standard SDK configuration (sdkconfig/standard): what the
// local runner and the admin command link. Lambda binaries name their few back ends instead
// (shared/lambdaapp).
package fullapp

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/dynamoapp"
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/app/sdkconfig/standard"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/envelope"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// Embedded is the embedded store (settings.StoreEmbedded): DataDir/capif.db, locked while open.
var Embedded = app.Backend{Name: settings.StoreEmbedded, Store: openEmbedded}

// Local is the local signer (settings.SignerLocal), for development only: the envelope signer
// over the store's key set (embedded or DynamoDB), its private keys wrapped under the data
// directory's key file (KeyFile), which stands in for KMS and protects nothing from whoever can
// read that directory. The runner puts a key in the set at start (cmd/capif-local).
var Local = app.Backend{Name: settings.SignerLocal, Signer: openLocal}

// KeyFile is the local signer's wrapping key in the data directory: 32 bytes, mode 0600,
// created when first needed (envelope.OpenKeyFile).
const KeyFile = "signing-keys.key"

// Backends are all of them.
var Backends = []app.Backend{Embedded, dynamoapp.Backend, Local, kmsapp.Backend, kmsapp.Envelope}

// Open is app.Open with every back end, on the standard SDK configuration (built on first use)
// unless cfg names the process's own.
func Open(ctx context.Context, cfg app.Config) (*app.App, error) {
	cfg.Backends = Backends
	if cfg.AWS == nil {
		cfg.AWS = standard.Provider(ctx, cfg.Logger).Get
	}
	return app.Open(ctx, cfg)
}

// KeyManager changes the key set of a's store, as cfg's settings describe the deployment (its
// Legacy keys are the KMSKeyIDs setting's). One rule picks what wraps its new keys: the data
// directory's KeyFile for the local signer and, since capif-admin names no signer, on the
// embedded store without the KMSWrappingKey setting (the runner's store, stopped); otherwise
// the KMSWrappingKey setting's KMS key (none without one: signer kms records KMS keys only).
func KeyManager(ctx context.Context, cfg app.Config, a *app.App) (envelope.Manager, error) {
	getAWS := cfg.AWS
	if getAWS == nil {
		getAWS = standard.Provider(ctx, cfg.Logger).Get
	}
	set := cfg.Settings
	m, err := kmsapp.Manager(app.Input{Settings: set, Logger: cfg.Logger, AWS: getAWS, KeySet: a.KeySet})
	if err != nil {
		return envelope.Manager{}, err
	}
	if set.Signer == settings.SignerLocal || set.Store == settings.StoreEmbedded && set.KMSWrappingKey == "" {
		if m.Wrapper, err = openKeyFile(set); err != nil {
			return envelope.Manager{}, err
		}
	}
	return m, nil
}

// openKeyFile is the data directory's KeyFile, its keys bound to the settings' stack ("local"
// on the embedded store, the table prefix's on DynamoDB).
func openKeyFile(set settings.Config) (*envelope.KeyFile, error) {
	if set.DataDir == "" {
		return nil, errors.New("the local signer's wrapping key is in the data directory: set -data (CAPIF_DATA)")
	}
	return envelope.OpenKeyFile(filepath.Join(set.DataDir, KeyFile), set.Stack)
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
	return app.StoreAdapter{Store: db, Registry: db, KeySet: db, Close: db.Close}, nil
}

func openLocal(_ context.Context, in app.Input) (security.Signer, error) {
	w, err := openKeyFile(in.Settings)
	if err != nil {
		return nil, err
	}
	return envelope.New(envelope.Config{Keys: in.KeySet, Wrapper: w, Windows: app.KeyWindows(in.Settings), Logger: in.Logger})
}

// WithCCF sets cfg's identity towards AEFs (CCF, AEFPush) for the runner
// and capif-admin, from cfg.Settings: -ccf-cert with its -ccf-key or (capif-admin) its KMS key
// -ccf-kms-key if given, else (with a data directory) the CCF certificate minted from the dev
// CA there and renewed as it nears expiry (devpki.CCF); the AEFs are verified against -aef-ca,
// else the dev CA (with a data directory), else the system roots. Without a pair or a data
// directory (capif-admin on DynamoDB) there is no certificate, and pushes are left to the
// worker (security.AEFPushQueued).
func WithCCF(cfg *app.Config) error {
	set, out := cfg.Settings, cfg
	logger := cmp.Or(cfg.Logger, slog.Default())
	var ca *devpki.CA
	if set.DataDir != "" {
		var err error
		if ca, err = devpki.LoadOrCreateCA(set.DataDir); err != nil {
			return fmt.Errorf("dev CA: %w", err)
		}
	}
	var id notify.CCFIdentity
	switch {
	case set.CCFCertFile != "" && set.CCFKMSKey != "": // capif-admin with the deployment's key
		chain, err := os.ReadFile(set.CCFCertFile)
		if err != nil {
			return fmt.Errorf("CCF certificate (-ccf-cert): %w", err)
		}
		getAWS := cfg.AWS
		if getAWS == nil {
			getAWS = standard.Provider(context.Background(), logger).Get
		}
		awsCfg, err := getAWS()
		if err != nil {
			return err
		}
		cert, err := kmsapp.CCFCertificate(awsCfg, set.CCFKMSKey, set.CCFName, chain)
		if err != nil {
			return fmt.Errorf("CCF certificate (-ccf-cert, -ccf-kms-key): %w", err)
		}
		WarnExpiry(logger, cert.Leaf, time.Now())
		id.Certificate = func() (*tls.Certificate, error) { return cert, nil }
	case set.CCFCertFile != "":
		cert, err := tls.LoadX509KeyPair(set.CCFCertFile, set.CCFKeyFile)
		if err != nil {
			return fmt.Errorf("CCF certificate (-ccf-cert, -ccf-key): %w", err)
		}
		if cn := cert.Leaf.Subject.CommonName; cn != set.CCFName {
			return fmt.Errorf("CCF certificate (-ccf-cert): its Subject CN is %q, not the CCF's name %q (-ccf-name)", cn, set.CCFName)
		}
		WarnExpiry(logger, cert.Leaf, time.Now())
		id.Certificate = func() (*tls.Certificate, error) { return &cert, nil }
	case ca != nil:
		id.Certificate = (&devpki.CCF{Dir: set.DataDir, Name: set.CCFName, CA: ca}).Certificate
	default:
		out.AEFPush = security.AEFPushQueued
		return nil
	}
	switch {
	case set.AEFCA != "":
		pem, err := os.ReadFile(set.AEFCA)
		if err != nil {
			return fmt.Errorf("AEF CA (-aef-ca): %w", err)
		}
		id.AEFRoots = x509.NewCertPool()
		if !id.AEFRoots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("AEF CA (-aef-ca): %s holds no PEM certificate", set.AEFCA)
		}
	case ca != nil:
		id.AEFRoots = ca.Pool()
	}
	// Minted (or renewed) now, not at the first push: a broken data directory fails the start.
	if _, err := id.Certificate(); err != nil {
		return fmt.Errorf("CCF certificate: %w", err)
	}
	out.CCF = func(context.Context) (notify.CCFIdentity, error) { return id, nil }
	out.AEFPush = security.AEFPushInline
	return nil
}

// WarnExpiry logs a WARN when the CCF's certificate has less than devpki.CCFRenewBefore left:
// pushes to AEFs fail once it expires.
func WarnExpiry(logger *slog.Logger, leaf *x509.Certificate, now time.Time) {
	if left := leaf.NotAfter.Sub(now); left < devpki.CCFRenewBefore {
		logger.Warn("the CCF certificate expires soon: renew it, or pushes to AEFs fail", slog.Time("notAfter", leaf.NotAfter),
			slog.Int("daysLeft", int(left.Hours()/24)))
	}
}
