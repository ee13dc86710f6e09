// Command kmskey creates a token signing key through the KMS API and prints its id: ECC_NIST_P256
// for ES256 (the default) or RSA_2048 for RS256, named by its one argument (the key spec or the
// algorithm). It is for local-kms (`make run-aws`); the standard AWS configuration applies, so
// point AWS_ENDPOINT_URL_KMS at local-kms.
//
//	kmskey [ECC_NIST_P256 | RSA_2048 | ES256 | RS256]
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

// specs are the key specs by argument.
var specs = map[string]types.KeySpec{
	"": types.KeySpecEccNistP256, "ES256": types.KeySpecEccNistP256, "ECC_NIST_P256": types.KeySpecEccNistP256,
	"RS256": types.KeySpecRsa2048, "RSA_2048": types.KeySpecRsa2048,
}

func main() {
	arg := ""
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: kmskey [ECC_NIST_P256 | RSA_2048 | ES256 | RS256]")
		os.Exit(2)
	} else if len(os.Args) == 2 {
		arg = os.Args[1]
	}
	spec, ok := specs[arg]
	if !ok {
		fmt.Fprintf(os.Stderr, "kmskey: %q is not ECC_NIST_P256, RSA_2048, ES256 or RS256\n", arg)
		os.Exit(2)
	}
	if os.Getenv("AWS_ENDPOINT_URL_KMS") == "" && os.Getenv("KMSKEY_REAL_AWS") != "1" {
		fmt.Fprintln(os.Stderr, "kmskey: AWS_ENDPOINT_URL_KMS is unset; this tool is for local-kms (set KMSKEY_REAL_AWS=1 to use a real account)")
		os.Exit(2)
	}
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err == nil {
		var out *kms.CreateKeyOutput
		out, err = kms.NewFromConfig(cfg).CreateKey(ctx, &kms.CreateKeyInput{
			KeySpec: spec, KeyUsage: types.KeyUsageTypeSignVerify,
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
