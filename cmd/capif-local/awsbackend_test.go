package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/internal/testenv"
)

func init() {
	backends = append(backends, backend{name: "dynamodb+kms", throttles: true, args: func(t *testing.T) []string {
		testenv.DynamoDBEndpoint(t)
		testenv.KMSEndpoint(t)
		// The suite's notification receivers listen on 127.0.0.1, which DynamoDB runners refuse
		// unless told otherwise.
		return []string{"-store", "dynamodb", "-signer", "kms", "-kms-key-ids", newKMSKey(t),
			"-table-prefix", uniqueTablePrefix(), "-create-tables", "-allow-loopback-notifications"}
	}})
}

// newKMSKey creates an ES256 signing key in local-kms through the KMS API itself.
func newKMSKey(t *testing.T) string {
	t.Helper()
	return testenv.NewKMSKey(t, kmstypes.KeySpecEccNistP256, "")
}

// uniqueTablePrefix keeps every runner's tables apart in the shared DynamoDB Local.
func uniqueTablePrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "suite-" + hex.EncodeToString(b[:]) + "-"
}

// TestRunnerWithoutTables: on DynamoDB tables that do not exist (yet), a caller with a
// certificate is answered 503 with Retry-After (the deployment is broken, not the request) and
// the log has one ERROR line naming DynamoDB and the cause; a request without a certificate is
// still 401, before any store read.
func TestRunnerWithoutTables(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	b := backend{name: "dynamodb without tables", throttles: true} // 503 + Retry-After is the expected answer here
	r := launch(t, b, []string{"-store", "dynamodb", "-signer", "none", "-table-prefix", uniqueTablePrefix()}, t.TempDir(), nil)
	resp := r.as(t, "inv-000").get("inv-000", "")
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Fatalf("with a certificate: %d %v %s", resp.status, resp.header, resp.body)
	}
	wantProblem(t, r.anonymous(t).get("inv-000", ""), http.StatusUnauthorized)
	logs := r.logs.String()
	if !strings.Contains(logs, `"msg":"dependency unavailable"`) || !strings.Contains(logs, "does not exist") || !strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("no ERROR line naming the missing tables:\n%s", logs)
	}
}

func init() {
	backends = append(backends, backend{name: "dynamodb+kms-envelope", throttles: true, args: func(t *testing.T) []string {
		testenv.DynamoDBEndpoint(t)
		testenv.KMSEndpoint(t)
		return []string{"-store", "dynamodb", "-signer", "kms-envelope", "-kms-wrapping-key", newWrappingKey(t),
			"-table-prefix", uniqueTablePrefix(), "-create-tables", "-allow-loopback-notifications"}
	}})
}

// newWrappingKey creates a symmetric key in local-kms, to wrap the key set's keys.
func newWrappingKey(t *testing.T) string {
	t.Helper()
	return testenv.NewKMSKey(t, "", "")
}
