package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/internal/testenv"
)

// admin runs the command against an embedded store in dir.
func admin(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	return adminEnv(t, map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": dir}, args...)
}

func adminEnv(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := mainErr(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestAdminEmbedded(t *testing.T) {
	dir := t.TempDir()
	adminSteps(t, func(args ...string) (string, error) { return admin(t, dir, args...) })
}

// TestAdminDynamoDB runs the same steps on DynamoDB Local, tables created by the command.
func TestAdminDynamoDB(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	env := map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": "admin-" + hex.EncodeToString(b[:]) + "-"}
	adminSteps(t, func(args ...string) (string, error) {
		return adminEnv(t, env, append([]string{"-create-tables"}, args...)...)
	})
}

func adminSteps(t *testing.T, admin func(args ...string) (string, error)) {
	t.Helper()
	example := filepath.Join(testenv.RepoRoot(), "examples", "registry.json")
	steps := []struct {
		args    []string
		wantErr string
		wantOut string
	}{
		{args: []string{"import", "-f", example}, wantOut: "imported 2 API invokers, 2 AEFs, 3 service APIs"},
		{args: []string{"import", "-f", example}, wantOut: "imported 2 API invokers"}, // upsert: idempotent
		{args: []string{"remove-aef", "aef-2"}, wantErr: "still publishes api-location"},
		{args: []string{"remove-api", "api-location"}, wantOut: "revoked api-location from 0 security contexts"},
		{args: []string{"remove-api", "api-location"}, wantErr: "not found"},
		{args: []string{"remove-aef", "aef-2"}, wantOut: "remove-aef aef-2: done"},
		{args: []string{"remove-invoker", "invoker-2"}, wantOut: "remove-invoker invoker-2: done"},
		{args: []string{"remove-invoker", "invoker-2"}, wantErr: "not found"},
		{args: []string{"remove-invoker"}, wantErr: "exactly one id"},
		{args: []string{"frobnicate"}, wantErr: "unknown command"},
		{args: []string{"import"}, wantErr: "-f FILE is required"},
	}
	for _, s := range steps {
		out, err := admin(s.args...)
		switch {
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("%v: error %v, want %q (output %s)", s.args, err, s.wantErr, out)
		case s.wantErr == "" && err != nil:
			t.Fatalf("%v: %v (output %s)", s.args, err, out)
		case s.wantOut != "" && !strings.Contains(out, s.wantOut):
			t.Fatalf("%v: output %q, want %q", s.args, out, s.wantOut)
		}
	}
}

func TestAdminRejectsInvalidRegistry(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	doc := `{"apiInvokers":[{"apiInvokerId":"x"}],"aefs":[{"aefId":"x"}]}`
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admin(t, dir, "import", "-f", bad); err == nil || !strings.Contains(err.Error(), "both an API invoker and an AEF") {
		t.Fatalf("error %v, want the role clash named", err)
	}
}
