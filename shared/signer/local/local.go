// Package local is a security.Signer with keys held in memory and persisted as PEM files: the
// ES256 key signing-key.pem, the RS256 key (RSA 2048) signing-key-rs256.pem, a kid being the
// key's RFC 7638 thumbprint. It was the local runner's signer before the key set; the runner now
// keeps its keys in the key set (shared/signer/envelope) and imports these files once, with their
// kids (Keys), so tokens issued by an older build keep verifying. Tests and examples use New and
// Generate as an in-memory signer.
package local

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer"
)

// Key files inside a data directory, by algorithm.
var keyFiles = map[string]string{capif.ES256: "signing-key.pem", capif.RS256: "signing-key-rs256.pem"}

// Signer signs with the in-memory key of one algorithm and publishes every key it holds; a
// kid is its key's RFC 7638 thumbprint, so the same key always gets the same kid, whatever
// process loads it.
type Signer struct {
	key  *signer.Key
	kid  string
	jwks capif.JWKSet
}

var _ security.Signer = (*Signer)(nil)

// New wraps existing private keys (tests, or keys the caller manages): the first signs, all are
// published. Each must be ECDSA P-256 or RSA 2048.
func New(keys ...crypto.Signer) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("local signer: no key")
	}
	s := &Signer{}
	for i, k := range keys {
		if k == nil || reflect.ValueOf(k).IsNil() {
			return nil, errors.New("local signer: a nil key")
		}
		alg := signer.AlgOf(k.Public())
		if alg == "" {
			return nil, errors.New("local signer: a key must be ECDSA P-256 or RSA 2048 with exponent 65537")
		}
		kid, err := signer.Thumbprint(k.Public())
		if err != nil {
			return nil, err
		}
		jwk, err := signer.JWK(k.Public(), kid)
		if err != nil {
			return nil, err
		}
		s.jwks.Keys = append(s.jwks.Keys, jwk)
		if i == 0 {
			if s.key, err = signer.NewKey(alg, signer.InMemory{Key: k}, kid); err != nil {
				return nil, err
			}
			s.kid = kid
		}
	}
	return s, nil
}

// Generate makes a signer with a fresh ES256 key that lives only as long as the process.
func Generate() (*Signer, error) {
	key, err := signer.GenerateKey(capif.ES256)
	if err != nil {
		return nil, fmt.Errorf("local signer: %w", err)
	}
	return New(key)
}

// Open reads the key files of dir: the one of alg (capif.ES256 or capif.RS256; "" is ES256) signs, created
// (mode 0600, the directory 0700) when there is none yet; the other is published if present.
// Creation is atomic and never overwrites: if another process wrote the file first, its key is
// the one used.
func Open(dir, alg string) (*Signer, error) {
	if alg == "" {
		alg = capif.ES256
	}
	if _, ok := keyFiles[alg]; !ok || dir == "" {
		return nil, fmt.Errorf("local signer: algorithm %q or directory %q", alg, dir)
	}
	active, err := loadOrCreate(filepath.Join(dir, keyFiles[alg]), alg)
	if err != nil {
		return nil, err
	}
	keys := []crypto.Signer{active}
	for _, other := range capif.Algs {
		if other == alg {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, keyFiles[other]))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("local signer: %w", err)
		}
		k, err := parsePEM(data)
		if err != nil {
			return nil, fmt.Errorf("local signer: %s: %w", keyFiles[other], err)
		}
		keys = append(keys, k)
	}
	return New(keys...)
}

// Keys reads the key files present in dir, creating none: the one of alg first. Each key's kid
// is its signer.Thumbprint, as in New.
func Keys(dir, alg string) ([]crypto.Signer, error) {
	order := []string{alg}
	for _, a := range capif.Algs {
		if a != alg {
			order = append(order, a)
		}
	}
	var keys []crypto.Signer
	for _, a := range order {
		name, ok := keyFiles[a]
		if !ok {
			return nil, fmt.Errorf("local signer: algorithm %q", a)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("local signer: %w", err)
		}
		k, err := parsePEM(data)
		if err == nil && signer.AlgOf(k.Public()) != a {
			err = fmt.Errorf("a key for %q, not %s", signer.AlgOf(k.Public()), a)
		}
		if err != nil {
			return nil, fmt.Errorf("local signer: %s: %w", name, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// LoadOrCreate is the signer of the ES256 key file at path alone.
func LoadOrCreate(path string) (*Signer, error) {
	k, err := loadOrCreate(path, capif.ES256)
	if err != nil {
		return nil, err
	}
	return New(k)
}

// loadOrCreate reads the key at path, creating one of alg first when there is no file.
func loadOrCreate(path, alg string) (crypto.Signer, error) {
	if path == "" {
		return nil, errors.New("local signer: empty key path")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path, alg); err != nil {
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
	if got := signer.AlgOf(key.Public()); got != alg {
		return nil, fmt.Errorf("local signer: %s holds a key for %q, not %s", path, got, alg)
	}
	return key, nil
}

// KeyID is the kid of the tokens this signer issues.
func (s *Signer) KeyID() string { return s.kid }

// Sign issues the token for c with the signing key.
func (s *Signer) Sign(ctx context.Context, c capif.TokenClaims) (string, error) {
	return s.key.Sign(ctx, c)
}

// JWKS publishes every key, the signing key first. The slice is copied so callers cannot alter
// it.
func (s *Signer) JWKS(context.Context) (capif.JWKSet, error) {
	return capif.JWKSet{Keys: append([]capif.JWK(nil), s.jwks.Keys...)}, nil
}

// create writes a new key of alg to a temporary file beside path and links it into place; the
// link fails if path appeared meanwhile, which loadOrCreate then reads instead.
func create(path, alg string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("local signer: %w", err)
	}
	key, err := signer.GenerateKey(alg)
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

// parsePEM accepts the PKCS #8 form this package writes, the SEC 1 "EC PRIVATE KEY" form that
// openssl ecparam produces and the PKCS #1 "RSA PRIVATE KEY" form, so an operator may bring a key.
func parsePEM(data []byte) (crypto.Signer, error) {
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
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("the key is a %T, want ECDSA P-256 or RSA 2048", k)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", block.Type)
	}
}
