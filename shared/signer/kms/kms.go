// Package kms is the security.Signer backed by AWS KMS asymmetric keys (ECC_NIST_P256,
// SIGN_VERIFY). The private key never leaves KMS: the JWS signing input is hashed here and KMS
// signs the digest (MessageType DIGEST, ECDSA_SHA_256).
//
// Keys come as a list, active first. Tokens are signed with the first; the JWKS publishes every
// listed key that is still usable, so a rotation (prepend the new key) never invalidates a token
// that is still within its lifetime. An operator drops an old key from the list once its tokens
// have expired.
//
// No AWS call is made at construction. Aliases are resolved (DescribeKey) and public keys fetched
// (GetPublicKey) lazily, once per process and key; a Lambda cold start pays for neither.
package kms

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer"
)

// Client is the part of the KMS API the signer uses; *kms.Client satisfies it.
type Client interface {
	Sign(ctx context.Context, in *awskms.SignInput, optFns ...func(*awskms.Options)) (*awskms.SignOutput, error)
	GetPublicKey(ctx context.Context, in *awskms.GetPublicKeyInput, optFns ...func(*awskms.Options)) (*awskms.GetPublicKeyOutput, error)
	DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, optFns ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error)
}

// Signer signs tokens in KMS. Safe for concurrent use.
type Signer struct {
	client Client
	alg    string // the algorithm keys[0] signs with (CAPIF_TOKEN_ALG)
	keys   []*key // keys[0] signs
}

// signingAlgorithms are the KMS signing algorithms of the token algorithms, and specAlgs the
// token algorithm of each key spec the signer accepts.
var (
	signingAlgorithms = map[string]types.SigningAlgorithmSpec{
		capif.ES256: types.SigningAlgorithmSpecEcdsaSha256, capif.RS256: types.SigningAlgorithmSpecRsassaPkcs1V15Sha256}
	specAlgs = map[types.KeySpec]string{types.KeySpecEccNistP256: capif.ES256, types.KeySpecRsa2048: capif.RS256}
)

var _ security.Signer = (*Signer)(nil)

// New makes a signer over client for the listed keys, active first. It checks the form of each
// reference but calls nothing.
func New(client Client, keyRefs []string, alg string) (*Signer, error) {
	if client == nil {
		return nil, errors.New("kms signer: nil client")
	}
	if alg == "" {
		alg = capif.ES256
	}
	if signingAlgorithms[alg] == "" {
		return nil, fmt.Errorf("kms signer: algorithm %q, want ES256 or RS256", alg)
	}
	if len(keyRefs) == 0 {
		return nil, errors.New("kms signer: no key configured (CAPIF_KMS_KEY_IDS)")
	}
	s := &Signer{client: client, alg: alg}
	for _, ref := range keyRefs {
		k, err := newKey(client, ref, alg)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// NewFromConfig makes the KMS client from cfg (which carries the region, credentials and any
// endpoint override such as AWS_ENDPOINT_URL_KMS) with the KMS retry policy (awsretry.KMS;
// optFns are applied after it), and then calls New.
func NewFromConfig(cfg aws.Config, keyRefs []string, alg string, optFns ...func(*awskms.Options)) (*Signer, error) {
	return New(NewClient(cfg, optFns...), keyRefs, alg)
}

// NewClient is the KMS client of cfg with the KMS retry policy (awsretry.KMS); optFns are
// applied after it.
func NewClient(cfg aws.Config, optFns ...func(*awskms.Options)) *awskms.Client {
	policy := func(o *awskms.Options) {
		o.Retryer = awsretry.KMS.Retryer()
		o.HTTPClient = awsretry.KMS.HTTPClient(o.HTTPClient)
		o.APIOptions = append(o.APIOptions, awsretry.KMS.CountThrottles) // per-request metrics
	}
	return awskms.NewFromConfig(cfg, append([]func(*awskms.Options){policy}, optFns...)...)
}

// Sign issues the ES256 token for c with the active key; kid is that key's id.
func (s *Signer) Sign(ctx context.Context, c capif.TokenClaims) (string, error) {
	k := s.keys[0]
	r, err := k.resolve(ctx, s.client)
	if err != nil {
		return "", err
	}
	if r.keyID == "" {
		return "", fmt.Errorf("kms signer: active key %s: not found", k.ref)
	}
	tok, err := r.sign.Sign(ctx, c)
	var usage *types.InvalidKeyUsageException
	if errors.As(err, &usage) && ctx.Err() == nil {
		// The key cannot sign CAPIF_TOKEN_ALG (an RSA key with ES256, an EC key with RS256, or
		// not a signing key): a broken deployment. KMS's message names the key spec, so no
		// DescribeKey, which the functions are not granted, is needed.
		cause := fmt.Sprintf("the signing key cannot sign CAPIF_TOKEN_ALG is %s (%s)", s.alg, usage.ErrorMessage())
		slog.Default().Error("dependency unavailable", "dependency", "KMS", "op", "Sign", "key", r.keyID, "cause", cause)
		return "", fmt.Errorf("kms Sign %s: %w: %s: %w", r.keyID, security.ErrUnavailable, cause, err)
	}
	return tok, err
}

// JWKS publishes the verification key of every listed key that KMS still reports usable, active
// key first. A transient failure fails the whole call rather than answering a partial set that
// verifiers would cache.
func (s *Signer) JWKS(ctx context.Context) (capif.JWKSet, error) {
	set := capif.JWKSet{Keys: make([]capif.JWK, 0, len(s.keys))}
	seen := make(map[string]bool, len(s.keys))
	for _, k := range s.keys {
		jwk, err := k.public(ctx, s.client)
		if err != nil {
			return capif.JWKSet{}, err
		}
		if jwk == nil || seen[jwk.Kid] { // unusable, or listed twice (alias and id)
			continue
		}
		seen[jwk.Kid] = true
		set.Keys = append(set.Keys, *jwk)
	}
	return set, nil
}

// kmsKey signs digests with one KMS key.
type kmsKey struct {
	client Client
	keyID  string // key id or ARN, never an alias: the kid was derived from it
	algo   types.SigningAlgorithmSpec
}

func (k kmsKey) SignDigest(ctx context.Context, digest []byte) ([]byte, error) {
	out, err := k.client.Sign(ctx, &awskms.SignInput{
		KeyId:            aws.String(k.keyID),
		Message:          digest,
		MessageType:      types.MessageTypeDigest,
		SigningAlgorithm: k.algo,
	})
	if err != nil {
		return nil, classify(ctx, "Sign", k.keyID, err)
	}
	return out.Signature, nil
}

// publicKey turns a GetPublicKey answer into a P-256 or RSA 2048 key, refusing keys that cannot
// sign a token.
func publicKey(out *awskms.GetPublicKeyOutput) (crypto.PublicKey, error) {
	if out.KeyUsage != "" && out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("key usage is %s, want SIGN_VERIFY", out.KeyUsage)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, err
	}
	if signer.AlgOf(pub) == "" {
		return nil, fmt.Errorf("key spec is %s, want ECC_NIST_P256 or RSA_2048", out.KeySpec)
	}
	return pub, nil
}
