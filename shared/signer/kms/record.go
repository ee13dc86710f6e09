package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer"
)

// Record is the key set record of the KMS key ref (id, ARN or alias), read with one
// GetPublicKey: kid the key's id, as the KMS signer names it, so tokens and AEF caches stay
// valid when a deployment moves its CAPIF_KMS_KEY_IDS into the key set. The record is not yet
// published (security.SigningKeys.Publish).
func Record(ctx context.Context, client Client, ref string) (security.SigningKey, error) {
	if _, err := newKey(client, ref, capif.ES256); err != nil {
		return security.SigningKey{}, err
	}
	out, err := client.GetPublicKey(ctx, &awskms.GetPublicKeyInput{KeyId: &ref})
	if err != nil {
		return security.SigningKey{}, classify(ctx, "GetPublicKey", ref, err)
	}
	if out.KeyId == nil {
		return security.SigningKey{}, fmt.Errorf("kms GetPublicKey %s: no key id in the answer", ref)
	}
	arn := *out.KeyId // GetPublicKey names the key by its ARN
	_, keyID, ok := strings.Cut(arn, ":key/")
	if !ok || !validKeyID(keyID) {
		return security.SigningKey{}, fmt.Errorf("kms GetPublicKey %s: %q is not a key ARN", ref, arn)
	}
	pub, err := publicKey(out)
	if err != nil {
		return security.SigningKey{}, fmt.Errorf("kms key %s: %w", ref, err)
	}
	jwk, err := signer.JWK(pub, keyID)
	if err != nil {
		return security.SigningKey{}, err
	}
	return security.SigningKey{Kid: keyID, Alg: signer.AlgOf(pub), PublicJWK: jwk, KMSKeyID: arn}, nil
}

// TagLister is the part of the KMS API CheckTagged calls.
type TagLister interface {
	ListResourceTags(ctx context.Context, in *awskms.ListResourceTagsInput, optFns ...func(*awskms.Options)) (*awskms.ListResourceTagsOutput, error)
}

// StackTag is the tag of a stack's token-signing keys: the token role may sign only with keys
// that carry it (template.yaml's grants are conditioned on aws:ResourceTag/capif:stack).
const StackTag = "capif:stack"

// CheckTagged refuses a key that does not carry StackTag = stack: recorded in the key set, it
// would fail every token from its activation on.
func CheckTagged(ctx context.Context, client TagLister, keyID, stack string) error {
	in := &awskms.ListResourceTagsInput{KeyId: &keyID}
	for {
		out, err := client.ListResourceTags(ctx, in)
		if err != nil {
			return classify(ctx, "ListResourceTags", keyID, err)
		}
		for _, tag := range out.Tags {
			if aws.ToString(tag.TagKey) == StackTag && aws.ToString(tag.TagValue) == stack {
				return nil
			}
		}
		if !out.Truncated || out.NextMarker == nil {
			return fmt.Errorf("kms key %s is not tagged %s=%s: the token function may sign only with the stack's tagged keys (aws kms tag-resource --key-id %s --tags TagKey=%s,TagValue=%s)",
				keyID, StackTag, stack, keyID, StackTag, stack)
		}
		in.Marker = out.NextMarker
	}
}

// KeyOf is the signing key of a record that names a KMS key: each token is one kms:Sign.
func KeyOf(client Client, rec security.SigningKey) (*signer.Key, error) {
	algo := signingAlgorithms[rec.Alg]
	if rec.KMSKeyID == "" || algo == "" {
		return nil, errors.New("kms signer: the record names no KMS key of a known algorithm")
	}
	return signer.NewKey(rec.Alg, kmsKey{client: client, keyID: rec.KMSKeyID, algo: algo}, rec.Kid)
}
