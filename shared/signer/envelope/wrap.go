// Package envelope keeps token-signing keys as records of the key set (security.KeySet), their
// private halves encrypted at rest ("wrapped"): by a KMS symmetric key (signer kms-envelope) or,
// for development only, by AES-256-GCM under a key file. A process unwraps a key once and then
// signs in memory, so a token costs no KMS call.
//
// A wrapped key is bound to its stack and kid (the encryption context {"capif:stack": stack,
// "capif:kid": kid}, the additional data under the key file): a blob copied to another record
// or another stack does not unwrap.
package envelope

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer"
)

// Wrapper makes key pairs whose private half it hands out only wrapped, and unwraps them.
type Wrapper interface {
	// NewKeyPair makes a key pair for alg (capif.ES256 or capif.RS256) bound to kid.
	NewKeyPair(ctx context.Context, alg, kid string) (pub crypto.PublicKey, wrapped []byte, err error)
	// Unwrap returns the private key wrapped for kid.
	Unwrap(ctx context.Context, kid string, wrapped []byte) (crypto.Signer, error)
}

// EncryptionContext is what a wrapped key is bound to.
func EncryptionContext(stack, kid string) map[string]string {
	return map[string]string{"capif:stack": stack, "capif:kid": kid}
}

// NewKid is a fresh kid: k-<yyyymmdd>-<8 hex>, dated for operators, random so that it is chosen
// before the key exists (it is part of the encryption context).
func NewKid(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "k-" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(b[:])
}

// NewRecord makes a key pair through w and returns its key set record (not yet published).
func NewRecord(ctx context.Context, w Wrapper, alg string, now time.Time) (security.SigningKey, error) {
	kid := NewKid(now)
	pub, wrapped, err := w.NewKeyPair(ctx, alg, kid)
	if err != nil {
		return security.SigningKey{}, err
	}
	if signer.AlgOf(pub) != alg {
		return security.SigningKey{}, fmt.Errorf("envelope: the new key of %s is not %s", kid, alg)
	}
	return record(kid, pub, wrapped)
}

// record is the key set record of the wrapped key pub (not yet published).
func record(kid string, pub crypto.PublicKey, wrapped []byte) (security.SigningKey, error) {
	jwk, err := signer.JWK(pub, kid)
	if err != nil {
		return security.SigningKey{}, err
	}
	return security.SigningKey{Kid: kid, Alg: jwk.Alg, PublicJWK: jwk, WrappedKey: wrapped}, nil
}

// parsePrivate reads a PKCS #8 private key that signs alg-compatible tokens.
func parsePrivate(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok || signer.AlgOf(s.Public()) == "" {
		return nil, errors.New("not an ECDSA P-256 or RSA 2048 key")
	}
	return s, nil
}

// --- KMS ----------------------------------------------------------------------------------------

// KMSClient is the part of the KMS API a KMS wrapper calls.
type KMSClient interface {
	GenerateDataKeyPairWithoutPlaintext(ctx context.Context, in *awskms.GenerateDataKeyPairWithoutPlaintextInput, optFns ...func(*awskms.Options)) (*awskms.GenerateDataKeyPairWithoutPlaintextOutput, error)
	Decrypt(ctx context.Context, in *awskms.DecryptInput, optFns ...func(*awskms.Options)) (*awskms.DecryptOutput, error)
}

// KMS wraps keys under a KMS symmetric key: KMS makes the pair and returns the private half
// encrypted only (GenerateDataKeyPairWithoutPlaintext), and Decrypt unwraps it.
type KMS struct {
	client      KMSClient
	wrappingKey string // id, ARN or alias
	stack       string
}

// NewKMS is the wrapper of stack under wrappingKey.
func NewKMS(client KMSClient, wrappingKey, stack string) (*KMS, error) {
	if wrappingKey == "" || stack == "" {
		return nil, errors.New("envelope: the KMS wrapper needs a wrapping key and a stack name")
	}
	return &KMS{client: client, wrappingKey: wrappingKey, stack: stack}, nil
}

var pairSpecs = map[string]types.DataKeyPairSpec{capif.ES256: types.DataKeyPairSpecEccNistP256, capif.RS256: types.DataKeyPairSpecRsa2048}

// NewKeyPair asks KMS for a key pair of alg, its private half encrypted under the wrapping key.
func (w *KMS) NewKeyPair(ctx context.Context, alg, kid string) (crypto.PublicKey, []byte, error) {
	spec, ok := pairSpecs[alg]
	if !ok {
		return nil, nil, fmt.Errorf("envelope: no key pair for %q", alg)
	}
	out, err := w.client.GenerateDataKeyPairWithoutPlaintext(ctx, &awskms.GenerateDataKeyPairWithoutPlaintextInput{
		KeyId: aws.String(w.wrappingKey), KeyPairSpec: spec, EncryptionContext: EncryptionContext(w.stack, kid),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: kms GenerateDataKeyPairWithoutPlaintext %s: %w", w.wrappingKey, err)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil || len(out.PrivateKeyCiphertextBlob) == 0 {
		return nil, nil, fmt.Errorf("envelope: kms GenerateDataKeyPairWithoutPlaintext %s: an unusable answer", w.wrappingKey)
	}
	return pub, out.PrivateKeyCiphertextBlob, nil
}

// Unwrap decrypts the private key of kid (one kms:Decrypt).
func (w *KMS) Unwrap(ctx context.Context, kid string, wrapped []byte) (crypto.Signer, error) {
	out, err := w.client.Decrypt(ctx, &awskms.DecryptInput{
		CiphertextBlob: wrapped, KeyId: aws.String(w.wrappingKey), EncryptionContext: EncryptionContext(w.stack, kid),
	})
	if err != nil {
		return nil, fmt.Errorf("envelope: kms Decrypt of %s: %w", kid, err)
	}
	defer clear(out.Plaintext)
	key, err := parsePrivate(out.Plaintext)
	if err != nil {
		return nil, fmt.Errorf("envelope: the key of %s: %w", kid, err)
	}
	return key, nil
}

// --- key file -----------------------------------------------------------------------------------

// KeyFile wraps keys with AES-256-GCM under a 32-byte key kept in a file: it stands in for KMS
// on a developer's machine, and protects nothing from whoever can read that file.
type KeyFile struct {
	aead  cipher.AEAD
	stack string
}

// OpenKeyFile reads the wrapping key in path, creating it (0600) when absent.
func OpenKeyFile(path, stack string) (*KeyFile, error) {
	if stack == "" {
		return nil, errors.New("envelope: the key file's keys are bound to a stack: none given")
	}
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		err = writeNew(path, key)
		if errors.Is(err, fs.ErrExist) { // another process made it first
			key, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("envelope: key file: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("envelope: key file %s: %d bytes, want 32", path, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KeyFile{aead: aead, stack: stack}, nil
}

// writeNew creates path with data, mode 0600, failing with fs.ErrExist if it exists. The data
// is written to a temporary file first and linked into place, so another process never reads
// the file empty or half written; where the file system has no hard links, the file is created
// exclusively and written in place.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".wrapping-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err = errors.Join(err, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		return err
	}
	switch err = os.Link(f.Name(), path); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		return err
	default: // no hard links here
		if err = writeExclusive(path, data); err != nil {
			return err
		}
	}
	if d, err := os.Open(dir); err == nil { // the new name survives a crash
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// writeExclusive creates path with data, mode 0600, failing with fs.ErrExist if it exists.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		_ = os.Remove(path)
	}
	return err
}

// additionalData is the encryption context as GCM's additional data.
func (w *KeyFile) additionalData(kid string) []byte {
	return []byte("capif:kid=" + kid + "\x00capif:stack=" + w.stack)
}

// NewKeyPair makes the pair in this process and wraps the private half.
func (w *KeyFile) NewKeyPair(_ context.Context, alg, kid string) (crypto.PublicKey, []byte, error) {
	key, err := signer.GenerateKey(alg)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: %w", err)
	}
	wrapped, err := w.Wrap(kid, key)
	if err != nil {
		return nil, nil, err
	}
	return key.Public(), wrapped, nil
}

// Wrap wraps key (ECDSA P-256 or RSA 2048) for kid: the one wrapping of this file, for the keys
// NewKeyPair makes and for a key that signed already (Record).
func (w *KeyFile) Wrap(kid string, key crypto.Signer) ([]byte, error) {
	if signer.AlgOf(key.Public()) == "" {
		return nil, fmt.Errorf("envelope: the key of %s is not an ECDSA P-256 or RSA 2048 key", kid)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	nonce := make([]byte, w.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return w.aead.Seal(nonce, nonce, der, w.additionalData(kid)), nil
}

// Record is the key set record (not yet published) of key, a key that signed before it was in
// the set (the runner's PEM keys), wrapped under this file for the kid its tokens carry, so
// that they keep verifying once it is imported (Manager.Import).
func (w *KeyFile) Record(kid string, key crypto.Signer) (security.SigningKey, error) {
	wrapped, err := w.Wrap(kid, key)
	if err != nil {
		return security.SigningKey{}, err
	}
	return record(kid, key.Public(), wrapped)
}

// Unwrap opens the private key of kid.
func (w *KeyFile) Unwrap(_ context.Context, kid string, wrapped []byte) (crypto.Signer, error) {
	n := w.aead.NonceSize()
	if len(wrapped) < n {
		return nil, fmt.Errorf("envelope: the key of %s is cut short", kid)
	}
	der, err := w.aead.Open(nil, wrapped[:n], wrapped[n:], w.additionalData(kid))
	if err != nil {
		return nil, fmt.Errorf("envelope: the key of %s does not open under this key file, stack and kid", kid)
	}
	defer clear(der)
	key, err := parsePrivate(der)
	if err != nil {
		return nil, fmt.Errorf("envelope: the key of %s: %w", kid, err)
	}
	return key, nil
}
