package envelope

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/signer"
)

type staticCreds struct{}

func (staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", Source: "test"}, nil
}

// localKMS is a client of local-kms and a fresh symmetric wrapping key in it.
func localKMS(t testing.TB) (*awskms.Client, string) {
	t.Helper()
	endpoint := testenv.KMSEndpoint(t)
	c := awskms.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: staticCreds{}}, func(o *awskms.Options) { o.BaseEndpoint = aws.String(endpoint) })
	out, err := c.CreateKey(t.Context(), &awskms.CreateKeyInput{Description: aws.String("capif-security wrapping key test")})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return c, aws.ToString(out.KeyMetadata.KeyId)
}

// wrappers make the two Wrappers, each with a second one of another stack on the same key.
var wrappers = map[string]func(t *testing.T) (w, otherStack Wrapper){
	"key file": func(t *testing.T) (Wrapper, Wrapper) {
		path := filepath.Join(t.TempDir(), "wrapping.key")
		w, err := OpenKeyFile(path, "local")
		if err != nil {
			t.Fatal(err)
		}
		other, err := OpenKeyFile(path, "other")
		if err != nil {
			t.Fatal(err)
		}
		return w, other
	},
	"kms": func(t *testing.T) (Wrapper, Wrapper) {
		c, key := localKMS(t)
		w, err := NewKMS(c, key, "stack-a")
		if err != nil {
			t.Fatal(err)
		}
		other, _ := NewKMS(c, key, "stack-b")
		return w, other
	},
}

// TestWrappers: each wrapper's pair unwraps for its kid and stack only, and a changed blob does
// not unwrap at all.
func TestWrappers(t *testing.T) {
	for name, open := range wrappers {
		t.Run(name, func(t *testing.T) {
			w, other := open(t)
			for _, alg := range []string{capif.ES256, capif.RS256} {
				kid := NewKid(time.Now())
				pub, wrapped, err := w.NewKeyPair(t.Context(), alg, kid)
				if err != nil {
					t.Fatalf("%s: %v", alg, err)
				}
				if signer.AlgOf(pub) != alg {
					t.Fatalf("%s: a public key of %q", alg, signer.AlgOf(pub))
				}
				key, err := w.Unwrap(t.Context(), kid, wrapped)
				if err != nil {
					t.Fatalf("%s: unwrap: %v", alg, err)
				}
				if !reflect.DeepEqual(key.Public(), pub) {
					t.Fatalf("%s: the unwrapped key is not the pair's", alg)
				}
				digest := sha256.Sum256([]byte("x"))
				if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					t.Errorf("%s: the unwrapped key does not sign: %v", alg, err)
				}
				if _, err := w.Unwrap(t.Context(), NewKid(time.Now()), wrapped); err == nil {
					t.Errorf("%s: unwrapped under another kid", alg)
				}
				if _, err := other.Unwrap(t.Context(), kid, wrapped); err == nil {
					t.Errorf("%s: unwrapped for another stack", alg)
				}
				for _, i := range []int{0, len(wrapped) / 2, len(wrapped) - 1} {
					bad := append([]byte(nil), wrapped...)
					bad[i] ^= 1
					if _, err := w.Unwrap(t.Context(), kid, bad); err == nil {
						t.Errorf("%s: byte %d changed, still unwrapped", alg, i)
					}
				}
			}
			if _, _, err := w.NewKeyPair(t.Context(), "HS256", "k"); err == nil {
				t.Error("a key pair for HS256")
			}
		})
	}
}

// TestNewRecord: a dated random kid, the JWK of the pair under it, the private half wrapped.
func TestNewRecord(t *testing.T) {
	w, err := OpenKeyFile(filepath.Join(t.TempDir(), "k"), "local")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 23, 59, 0, 0, time.UTC)
	a, err := NewRecord(t.Context(), w, capif.RS256, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewRecord(t.Context(), w, capif.RS256, now)
	if !regexp.MustCompile(`^k-20261204-[0-9a-f]{8}$`).MatchString(a.Kid) || a.Kid == b.Kid {
		t.Errorf("kids %q and %q", a.Kid, b.Kid)
	}
	if a.Alg != capif.RS256 || a.PublicJWK.Kid != a.Kid || a.PublicJWK.Alg != capif.RS256 || a.PublicJWK.Kty != "RSA" || len(a.WrappedKey) == 0 || a.KMSKeyID != "" {
		t.Errorf("record %+v", a)
	}
}

// TestKeyFile: created 0600 with 32 bytes, the same key on the next open, a file of another
// size refused.
func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir", "wrapping.key")
	w, err := OpenKeyFile(path, "local")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("the key file: %v %v", fi, err)
	}
	_, wrapped, err := w.NewKeyPair(t.Context(), capif.ES256, "k1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := OpenKeyFile(path, "local")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Unwrap(t.Context(), "k1", wrapped); err != nil {
		t.Errorf("after reopening: %v", err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKeyFile(path, "local"); err == nil {
		t.Error("a 5-byte key file was accepted")
	}
}

// TestKeyFileRecord: a key that signed already, wrapped for its kid: it unwraps for that kid
// only, and its record publishes it under that kid.
func TestKeyFileRecord(t *testing.T) {
	w, err := OpenKeyFile(filepath.Join(t.TempDir(), "k"), "local")
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, key := range []crypto.Signer{ec, rs} {
		kid, _ := signer.Thumbprint(key.Public())
		rec, err := w.Record(kid, key)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := signer.JWK(key.Public(), kid)
		if rec.Kid != kid || rec.Alg != signer.AlgOf(key.Public()) || rec.PublicJWK != want || rec.KMSKeyID != "" {
			t.Errorf("record %+v", rec)
		}
		got, err := w.Unwrap(t.Context(), kid, rec.WrappedKey)
		if err != nil || !reflect.DeepEqual(got.Public(), key.Public()) {
			t.Errorf("unwrap: %v", err)
		}
		if _, err := w.Unwrap(t.Context(), "other", rec.WrappedKey); err == nil {
			t.Error("unwrapped for another kid")
		}
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := w.Record("weak", weak); err == nil {
		t.Error("wrapped an RSA 1024 key")
	}
}
