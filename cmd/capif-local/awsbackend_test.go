package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/internal/testenv"
)

func init() {
	backends = append(backends, backend{name: "dynamodb+kms", throttles: true, args: func(t *testing.T) []string {
		testenv.DynamoDBEndpoint(t)
		testenv.KMSEndpoint(t)
		return []string{"-store", "dynamodb", "-signer", "kms", "-kms-key-ids", newKMSKey(t),
			"-table-prefix", uniqueTablePrefix(), "-create-tables"}
	}})
}

// newKMSKey creates an ES256 signing key in local-kms through the KMS API itself.
func newKMSKey(t *testing.T) string {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := awskms.NewFromConfig(cfg).CreateKey(context.Background(), &awskms.CreateKeyInput{
		KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify,
		Description: aws.String("capif-local HTTP suite"),
	})
	if err != nil {
		t.Fatalf("creating a KMS key in local-kms: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

// uniqueTablePrefix keeps every runner's tables apart in the shared DynamoDB Local.
func uniqueTablePrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "suite-" + hex.EncodeToString(b[:]) + "-"
}
