// Package local is the security.Signer of the local runner: one ES256 key held in memory and
// persisted as a PEM file, so tokens issued before a restart still verify after it.
package local

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer"
)

// Signer signs with an in-memory P-256 key; kid is the key's RFC 7638 thumbprint, so the same
// key always gets the same kid, whatever process loads it.
type Signer struct {
	key  *signer.Key
	kid  string
	jwks capif.JWKSet
}

var _ security.Signer = (*Signer)(nil)

// New wraps an existing P-256 private key (tests, or a key the caller manages).
func New(key *ecdsa.PrivateKey) (*Signer, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("local signer: the key must be ECDSA P-256")
	}
	kid, err := signer.Thumbprint(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	jwk, err := signer.JWK(&key.PublicKey, kid)
	if err != nil {
		return nil, err
	}
	sk, err := signer.NewKey(digestSigner{key}, kid)
	if err != nil {
		return nil, err
	}
	return &Signer{key: sk, kid: kid, jwks: capif.JWKSet{Keys: []capif.JWK{jwk}}}, nil
}

// Generate makes a signer with a fresh key that lives only as long as the process.
func Generate() (*Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local signer: %w", err)
	}
	return New(key)
}

// LoadOrCreate reads the PEM private key at path, or, when there is no file yet, generates one
// and writes it there with mode 0600 (creating the directory with 0700). Creation is atomic and
// never overwrites: if another process wrote the file first, its key is the one used.
func LoadOrCreate(path string) (*Signer, error) {
	if path == "" {
		return nil, errors.New("local signer: empty key path")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, err
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("local signer: %w", err)
	}
	key, err := parsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("local signer: %s: %w", path, err)
	}
	return New(key)
}

// KeyID is the kid of the tokens this signer issues.
func (s *Signer) KeyID() string { return s.kid }

// Sign issues the ES256 token for c.
func (s *Signer) Sign(ctx context.Context, c capif.TokenClaims) (string, error) {
	return s.key.Sign(ctx, c)
}

// JWKS publishes the one verification key. The slice is copied so callers cannot alter it.
func (s *Signer) JWKS(context.Context) (capif.JWKSet, error) {
	return capif.JWKSet{Keys: append([]capif.JWK(nil), s.jwks.Keys...)}, nil
}

// digestSigner adapts the private key to the common signing path.
type digestSigner struct{ key *ecdsa.PrivateKey }

func (d digestSigner) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, d.key, digest)
}

// create writes a new key to a temporary file beside path and links it into place; the link
// fails if path appeared meanwhile, which LoadOrCreate then reads instead.
func create(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("local signer: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("local signer: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("local signer: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".signing-key-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("local signer: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return fmt.Errorf("local signer: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("local signer: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("local signer: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("local signer: %w", err)
	}
	return nil
}

// parsePEM accepts the PKCS #8 form this package writes and the SEC 1 "EC PRIVATE KEY" form
// that openssl ecparam produces, so an operator may bring a key.
func parsePEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the key is a %T, want ECDSA P-256", k)
		}
		return ec, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", block.Type)
	}
}
