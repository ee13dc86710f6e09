package fullapp

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/envelope"
)

// TestWarnExpiry: a WARN from 30 days before the CCF's certificate expires, none before.
func TestWarnExpiry(t *testing.T) {
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		left time.Duration
		warn bool
	}{{31 * 24 * time.Hour, false}, {29 * 24 * time.Hour, true}, {-time.Hour, true}} {
		var b bytes.Buffer
		WarnExpiry(slog.New(slog.NewTextHandler(&b, nil)), &x509.Certificate{NotAfter: now.Add(tt.left)}, now)
		if got := strings.Contains(b.String(), "level=WARN"); got != tt.warn {
			t.Errorf("%s left: logged %q", tt.left, b.String())
		}
	}
}

// TestKeyManagerWrapper: the one rule of what wraps new keys: the data directory's key file for
// the local signer and for capif-admin on the embedded store without -kms-wrapping-key; the
// KMS key otherwise; nothing on DynamoDB without one (signer kms).
func TestKeyManagerWrapper(t *testing.T) {
	awsCfg := func() (aws.Config, error) { return aws.Config{Region: "eu-west-1"}, nil }
	for _, tc := range []struct {
		name string
		set  settings.Config
		want string
	}{
		{"the runner's local signer", settings.Config{Store: settings.StoreDynamoDB, Signer: settings.SignerLocal}, "key file"},
		{"capif-admin, embedded", settings.Config{Store: settings.StoreEmbedded, Signer: settings.SignerNone}, "key file"},
		{"capif-admin, embedded, a wrapping key", settings.Config{Store: settings.StoreEmbedded, Signer: settings.SignerNone, KMSWrappingKey: "alias/w"}, "kms"},
		{"capif-admin, dynamodb", settings.Config{Store: settings.StoreDynamoDB, Signer: settings.SignerNone}, "none"},
		{"capif-admin, dynamodb, a wrapping key", settings.Config{Store: settings.StoreDynamoDB, Signer: settings.SignerNone, KMSWrappingKey: "alias/w"}, "kms"},
		{"the runner's kms-envelope signer", settings.Config{Store: settings.StoreEmbedded, Signer: settings.SignerKMSEnvelope, KMSWrappingKey: "alias/w"}, "kms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set.DataDir, tc.set.Stack, tc.set.TokenAlg = t.TempDir(), "local", capif.ES256
			m, err := KeyManager(t.Context(), app.Config{Settings: tc.set, AWS: awsCfg}, &app.App{})
			if err != nil {
				t.Fatal(err)
			}
			got := "none"
			switch m.Wrapper.(type) {
			case *envelope.KeyFile:
				got = "key file"
				fi, err := os.Stat(filepath.Join(tc.set.DataDir, KeyFile))
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("the key file: %v %v", fi, err)
				}
			case *envelope.KMS:
				got = "kms"
			}
			if got != tc.want {
				t.Errorf("wrapper %s, want %s", got, tc.want)
			}
		})
	}
}
