package main

// Go's internal rule keeps cmd/ from importing shared/internal/testenv, so the project's rule for
// tests that need an external peer is mirrored here, unchanged: under CI=true a missing peer
// fails the test, otherwise it skips saying how to get it. Keep these in step with testenv.

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func peerUnavailable(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not available under CI=true: %s", what, hint)
	}
	t.Skipf("skipping: %s is not available (%s)", what, hint)
}

// specDir is testenv.SpecDir: ../shared/spec beside the repository, or CAPIF_SPEC_DIR.
func specDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CAPIF_SPEC_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "spec")
	}
	if _, err := os.Stat(filepath.Join(dir, "bundled", "CAPIF_Security_API.bundled.yaml")); err != nil {
		peerUnavailable(t, "the 3GPP OpenAPI files", "expected "+dir+"/bundled/CAPIF_Security_API.bundled.yaml (set CAPIF_SPEC_DIR); a plain clone does not have them")
	}
	return dir
}

// peerEndpoint is testenv.DynamoDBEndpoint / KMSEndpoint: the endpoint `make test` exports in
// env (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_KMS), for the back-end set-ups that need one.
func peerEndpoint(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		peerUnavailable(t, what, env+" is unset; run the tests with `make test`, which starts it")
	}
	return v
}
