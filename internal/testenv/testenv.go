// Package testenv tells tests where the external peers are (DynamoDB Local, local-kms, the 3GPP
// spec files) and enforces the project's rule: a test that needs a missing peer fails under
// CI=true and otherwise skips, saying why and how to get it.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable fails the test under CI and skips it otherwise.
func Unavailable(t testing.TB, what, hint string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s is not available under CI=true: %s", what, hint)
	}
	t.Skipf("skipping: %s is not available (%s)", what, hint)
}

// DynamoDBEndpoint returns the DynamoDB Local endpoint started by `make test`
// (AWS_ENDPOINT_URL_DYNAMODB).
func DynamoDBEndpoint(t testing.TB) string {
	t.Helper()
	return endpoint(t, "AWS_ENDPOINT_URL_DYNAMODB", "DynamoDB Local")
}

// KMSEndpoint returns the local-kms endpoint started by `make test` (AWS_ENDPOINT_URL_KMS).
func KMSEndpoint(t testing.TB) string {
	t.Helper()
	return endpoint(t, "AWS_ENDPOINT_URL_KMS", "local-kms")
}

func endpoint(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		Unavailable(t, what, env+" is unset; run the tests with `make test`, which starts it")
	}
	return v
}

// RepoRoot is the module root (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SpecDir returns ../shared/spec beside the repository (CAPIF_SPEC_DIR overrides it).
func SpecDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CAPIF_SPEC_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared", "spec")
	}
	if _, err := os.Stat(filepath.Join(dir, "bundled", "CAPIF_Security_API.bundled.yaml")); err != nil {
		Unavailable(t, "the 3GPP OpenAPI files", "expected "+dir+"/bundled/CAPIF_Security_API.bundled.yaml (set CAPIF_SPEC_DIR); a plain clone does not have them")
	}
	return dir
}
