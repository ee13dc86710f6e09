package main

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/internal/testenv"
)

// keyStates reads keys list: kid → "ALG KIND STATE".
func keyStates(t *testing.T, out string) map[string]string {
	t.Helper()
	states := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] != "KID" && !strings.HasPrefix(f[0], "(") {
			states[f[0]] = strings.Join(f[1:4], " ")
		}
	}
	return states
}

// capif-admin keys on DynamoDB with local-kms, as an operator moves a kms deployment to
// kms-envelope: import-env records CAPIF_KMS_KEY_IDS with their kids, add records one more KMS
// key, rotate (with the wrapping key) publishes a wrapped one, retire removes a key that never
// signed at once, and retire -now hands signing to the newest waiting key.
func TestAdminKeys(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	testenv.KMSEndpoint(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	stack := "keys-" + hex.EncodeToString(b[:])
	env := map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": stack + "-"}
	run := func(args ...string) string {
		t.Helper()
		out, err := adminEnv(t, env, append([]string{"-create-tables"}, args...)...)
		if err != nil {
			t.Fatalf("capif-admin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		out, err := adminEnv(t, env, append([]string{"-create-tables"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("capif-admin %s: %v, want an error saying %q\n%s", strings.Join(args, " "), err, want, out)
		}
	}
	if out := run("keys", "list"); !strings.Contains(out, "(none: the functions sign with CAPIF_KMS_KEY_IDS") {
		t.Errorf("an empty set:\n%s", out)
	}
	es, rsa := testenv.NewKMSKey(t, kmstypes.KeySpecEccNistP256, stack), testenv.NewKMSKey(t, kmstypes.KeySpecRsa2048, stack)
	fails("no keys in CAPIF_KMS_KEY_IDS", "keys", "import-env")
	fails("the key set is empty", "keys", "add", es) // CAPIF_KMS_KEY_IDS sign: record them first
	got := keyStates(t, run("-kms-key-ids", es+","+rsa, "keys", "import-env"))
	if got[es] != "ES256 kms active" || got[rsa] != "RS256 kms previous" {
		t.Fatalf("after import-env: %v", got)
	}
	fails("has keys already", "-kms-key-ids", es, "keys", "import-env")
	fails("keys add", "keys", "rotate") // no wrapping key: signer kms makes no keys
	fails("is not tagged capif:stack="+stack, "keys", "add", testenv.NewKMSKey(t, kmstypes.KeySpecEccNistP256, "other-stack"))
	added := testenv.NewKMSKey(t, kmstypes.KeySpecEccNistP256, stack)
	if got = keyStates(t, run("keys", "add", added)); got[added] != "ES256 kms pending" {
		t.Fatalf("after add: %v", got)
	}
	if out := run("keys", "add", added); !strings.Contains(out, "in the key set already") {
		t.Errorf("adding it again:\n%s", out)
	}
	wrap := testenv.NewKMSKey(t, "", "")
	out := run("-kms-wrapping-key", wrap, "keys", "rotate")
	m := regexp.MustCompile(`published (k-\d{8}-[0-9a-f]{8}) \(ES256\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rotate:\n%s", out)
	}
	wrapped := m[1]
	if got = keyStates(t, run("keys", "retire", added)); got[added] != "ES256 kms retired" || got[wrapped] != "ES256 wrapped pending" {
		t.Errorf("after retiring the waiting KMS key: %v", got)
	}
	fails("rotate", "keys", "retire", es) // the signing key waits for its successor
	if got = keyStates(t, run("keys", "retire", "-now", es)); got[es] != "ES256 kms retired" || got[wrapped] != "ES256 wrapped active" {
		t.Errorf("after retire -now: %v", got)
	}
	before := run("keys", "list")
	if out := run("-dry-run", "-kms-wrapping-key", wrap, "keys", "rotate"); !strings.Contains(out, "dry run") {
		t.Errorf("a dry run:\n%s", out)
	}
	if after := run("keys", "list"); after != before {
		t.Errorf("a dry run changed the set:\n%s\nthen\n%s", before, after)
	}
	fails("want keys list", "keys", "retire")
	fails("-now goes with retire only", "keys", "-now", "list")
}
