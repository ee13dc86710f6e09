package testenv

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// NewKMSKey creates a key in local-kms through the KMS API (the process's AWS settings, which
// `make test` points at local-kms) and returns its id: a signing key of spec, or with spec ""
// a symmetric one; tagged capif:stack=stack unless stack is "".
func NewKMSKey(t testing.TB, spec kmstypes.KeySpec, stack string) string {
	t.Helper()
	KMSEndpoint(t)
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in := &awskms.CreateKeyInput{Description: aws.String("capif-security test key")}
	if spec != "" {
		in.KeySpec, in.KeyUsage = spec, kmstypes.KeyUsageTypeSignVerify
	}
	if stack != "" {
		in.Tags = []kmstypes.Tag{{TagKey: aws.String("capif:stack"), TagValue: aws.String(stack)}}
	}
	out, err := awskms.NewFromConfig(cfg).CreateKey(context.Background(), in)
	if err != nil {
		t.Fatalf("creating a KMS key in local-kms: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}
