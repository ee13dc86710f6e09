// Command kmskey creates an ES256 signing key (ECC_NIST_P256, SIGN_VERIFY) through the KMS API and
// prints its id. It is for local-kms (`make run-aws`); the standard AWS configuration applies, so
// point AWS_ENDPOINT_URL_KMS at local-kms.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func main() {
	if os.Getenv("AWS_ENDPOINT_URL_KMS") == "" && os.Getenv("KMSKEY_REAL_AWS") != "1" {
		fmt.Fprintln(os.Stderr, "kmskey: AWS_ENDPOINT_URL_KMS is unset; this tool is for local-kms (set KMSKEY_REAL_AWS=1 to use a real account)")
		os.Exit(2)
	}
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err == nil {
		var out *kms.CreateKeyOutput
		out, err = kms.NewFromConfig(cfg).CreateKey(ctx, &kms.CreateKeyInput{
			KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify,
			Description: aws.String("CAPIF local token signing key"),
		})
		if err == nil {
			fmt.Println(aws.ToString(out.KeyMetadata.KeyId))
			return
		}
	}
	fmt.Fprintln(os.Stderr, "kmskey:", err)
	os.Exit(1)
}
