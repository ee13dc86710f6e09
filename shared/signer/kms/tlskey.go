package kms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TLSKey is a KMS key (ECC_NIST_P256, SIGN_VERIFY) as a crypto.Signer: the private key of the
// CCF's client certificate towards AEFs (crypto/tls signs its handshakes with it) and of the
// certificate request that obtains it. The private key never leaves KMS: each Sign is one KMS
// Sign of a SHA-256 digest (MessageType DIGEST, ECDSA_SHA_256), the only form it accepts, so
// the IAM policy can allow exactly that.
type TLSKey struct {
	client Client
	keyID  string
	pub    *ecdsa.PublicKey
}

// signTimeout bounds one KMS Sign: crypto.Signer carries no context, and a handshake that
// waits longer has failed anyway (the notifier's own timeout is shorter).
const signTimeout = 5 * time.Second

// NewTLSKey is keyID in KMS with its public key pub, as a certificate names it (no KMS call).
func NewTLSKey(client Client, keyID string, pub crypto.PublicKey) (*TLSKey, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve.Params().Name != "P-256" {
		return nil, errors.New("kms TLS key: the certificate's public key is not P-256")
	}
	if client == nil || keyID == "" {
		return nil, errors.New("kms TLS key: no client or no key")
	}
	return &TLSKey{client: client, keyID: keyID, pub: ec}, nil
}

// PublicKeyOf reads keyID's public key from KMS (GetPublicKey), refusing a key that is not
// ECC_NIST_P256 for signing: for a certificate request, before any certificate exists.
func PublicKeyOf(ctx context.Context, client Client, keyID string) (*ecdsa.PublicKey, error) {
	out, err := client.GetPublicKey(ctx, &awskms.GetPublicKeyInput{KeyId: &keyID})
	if err != nil {
		return nil, classify(ctx, "GetPublicKey", keyID, err)
	}
	pub, err := publicKey(out)
	if err != nil {
		return nil, fmt.Errorf("kms key %s: %w", keyID, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("kms key %s: key spec is %s, want ECC_NIST_P256", keyID, out.KeySpec)
	}
	return ec, nil
}

// Public is the key's public half.
func (k *TLSKey) Public() crypto.PublicKey { return k.pub }

// Sign signs a SHA-256 digest in KMS and returns the ASN.1 DER signature crypto/tls and
// crypto/x509 expect; any other hash is refused.
func (k *TLSKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != crypto.SHA256.Size() {
		return nil, errors.New("kms TLS key: signs SHA-256 digests only (ECDSA_SHA_256)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	return kmsKey{client: k.client, keyID: k.keyID, algo: types.SigningAlgorithmSpecEcdsaSha256}.SignDigest(ctx, digest)
}
