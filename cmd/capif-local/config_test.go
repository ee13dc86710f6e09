package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := parseConfig(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != "127.0.0.1:8443" || got.DataDir != ".capif-local" || got.TokenTTL != 600*time.Second || got.APIRoot != "" || got.Issuer != "" ||
		!got.AllowLoopbackNotifications || got.Store != "embedded" || got.Signer != "local" || got.LogLevel != slog.LevelInfo ||
		got.CreateTables || got.Registry != "" || got.ClientCA != "" || got.TLSCert != "" || len(got.KMSKeyIDs) != 0 || len(got.Warnings) != 0 {
		t.Errorf("defaults %+v", got)
	}
	got, err = parseConfig([]string{"-store", "dynamodb"}, envOf(nil), io.Discard)
	if err != nil || ddbstore.Tables(got.Tables) != ddbstore.TablesWithPrefix("capif-") {
		t.Errorf("default tables %+v, %v", got.Tables, err)
	}
}

// TestParseConfigEnv: every flag falls back to its CAPIF_* variable; a flag beats the variable.
func TestParseConfigEnv(t *testing.T) {
	env := map[string]string{
		"CAPIF_ADDR": "127.0.0.1:9443", "CAPIF_DATA": "/var/lib/capif", "CAPIF_REGISTRY": "/etc/capif/registry.json",
		"CAPIF_TLS_CERT": "/etc/capif/tls.pem", "CAPIF_TLS_KEY": "/etc/capif/tls-key.pem", "CAPIF_CLIENT_CA": "/etc/capif/ca.pem",
		"CAPIF_API_ROOT": "https://capif.example.com", "CAPIF_ISSUER": "https://ccf.example.com/7", "CAPIF_TOKEN_TTL": "2m",
		"CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": "false", "CAPIF_STORE": "dynamodb", "CAPIF_SIGNER": "kms",
		"CAPIF_KMS_KEY_IDS": "alias/a,alias/b", "CAPIF_TABLE_PREFIX": "t-", "CAPIF_CREATE_TABLES": "yes", "CAPIF_LOG_LEVEL": "debug",
		"CAPIF_OUTBOX_TABLE": "explicit-outbox",
	}
	got, err := parseConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != "127.0.0.1:9443" || got.DataDir != "/var/lib/capif" || got.Registry != "/etc/capif/registry.json" ||
		got.TLSCert != "/etc/capif/tls.pem" || got.TLSKey != "/etc/capif/tls-key.pem" || got.ClientCA != "/etc/capif/ca.pem" ||
		got.APIRoot != "https://capif.example.com" || got.Issuer != "https://ccf.example.com/7" || got.TokenTTL != 2*time.Minute ||
		got.AllowLoopbackNotifications || got.Store != "dynamodb" || got.Signer != "kms" ||
		!reflect.DeepEqual(got.KMSKeyIDs, []string{"alias/a", "alias/b"}) || !got.CreateTables || got.LogLevel != slog.LevelDebug ||
		ddbstore.Tables(got.Tables) != (ddbstore.Tables{Contexts: "t-contexts", Registry: "t-registry", Outbox: "explicit-outbox"}) {
		t.Errorf("from env: %+v", got)
	}

	got, err = parseConfig([]string{"-addr", "127.0.0.1:0", "-data", "d", "-token-ttl", "45s", "-issuer", "https://flag.example.com",
		"-allow-loopback-notifications=true", "-create-tables=false", "-log-level", "warn", "-table-prefix", "f-"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != "127.0.0.1:0" || got.DataDir != "d" || got.TokenTTL != 45*time.Second || got.Issuer != "https://flag.example.com" ||
		!got.AllowLoopbackNotifications || got.CreateTables || got.LogLevel != slog.LevelWarn {
		t.Errorf("flags did not override env: %+v", got)
	}
	// A flag beats every variable: the explicit outbox name from the environment goes too.
	if ddbstore.Tables(got.Tables) != ddbstore.TablesWithPrefix("f-") {
		t.Errorf("-table-prefix f- gave tables %+v", got.Tables)
	}
	if got.Registry != env["CAPIF_REGISTRY"] || got.Store != "dynamodb" {
		t.Errorf("env lost for flags not given: %+v", got)
	}
}

// The old key variable still works, with a warning; a flag beats it.
func TestParseConfigDeprecatedKeyVariable(t *testing.T) {
	env := map[string]string{"CAPIF_SIGNER": "kms", "CAPIF_KMS_KEY_ID": "alias/old", "CAPIF_CCF_ID": "ccf-1"}
	got, err := parseConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.KMSKeyIDs, []string{"alias/old"}) || len(got.Warnings) != 2 ||
		!strings.Contains(strings.Join(got.Warnings, "\n"), "CAPIF_KMS_KEY_ID is deprecated: use CAPIF_KMS_KEY_IDS") ||
		!strings.Contains(strings.Join(got.Warnings, "\n"), "CAPIF_CCF_ID is no longer read") {
		t.Errorf("keys %q, warnings %q", got.KMSKeyIDs, got.Warnings)
	}
	var buf strings.Builder
	got.LogWarnings(slog.New(slog.NewJSONHandler(&buf, nil)))
	if n := strings.Count(buf.String(), `"level":"WARN"`); n != 2 {
		t.Errorf("%d warning lines: %s", n, buf.String())
	}
	env["CAPIF_KMS_KEY_IDS"] = "alias/new"
	if got, _ := parseConfig([]string{"-kms-key-ids", "alias/flag"}, envOf(env), io.Discard); !reflect.DeepEqual(got.KMSKeyIDs, []string{"alias/flag"}) {
		t.Errorf("keys %q, want the flag's", got.KMSKeyIDs)
	}
	if got, _ := parseConfig(nil, envOf(env), io.Discard); !reflect.DeepEqual(got.KMSKeyIDs, []string{"alias/new"}) || len(got.Warnings) != 1 {
		t.Errorf("keys %q, warnings %q: the new name wins silently over the old", got.KMSKeyIDs, got.Warnings)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"zero ttl", []string{"-token-ttl", "0s"}, nil},
		{"negative ttl", []string{"-token-ttl", "-5s"}, nil},
		{"ttl without unit", []string{"-token-ttl", "600"}, nil},
		{"ttl from env", nil, map[string]string{"CAPIF_TOKEN_TTL": "forever"}},
		{"loopback flag", []string{"-allow-loopback-notifications=maybe"}, nil},
		{"create-tables flag", []string{"-create-tables=sometimes"}, nil},
		{"create-tables from env", nil, map[string]string{"CAPIF_CREATE_TABLES": "sometimes"}},
		{"log level", []string{"-log-level", "loud"}, nil},
		{"log level from env", nil, map[string]string{"CAPIF_LOG_LEVEL": "chatty"}},
		{"addr without port", []string{"-addr", "localhost"}, nil},
		{"empty addr", []string{"-addr", ""}, nil},
		{"addr from env", nil, map[string]string{"CAPIF_ADDR": "127.0.0.1"}},
		{"cert without key", []string{"-tls-cert", "c.pem"}, nil},
		{"key without cert", nil, map[string]string{"CAPIF_TLS_KEY": "k.pem"}},
		{"positional argument", []string{"serve"}, nil},
		{"unknown flag", []string{"-nope"}, nil},
		{"flag without value", []string{"-addr"}, nil},
		{"unknown store", []string{"-store", "cassandra"}, nil},
		{"unknown signer", []string{"-signer", "hsm"}, nil},
		{"kms without keys", []string{"-signer", "kms"}, nil},
		{"http issuer", []string{"-issuer", "http://ccf.example.com"}, nil},
		{"issuer with a query", []string{"-issuer", "https://ccf.example.com/?a=b"}, nil},
		{"issuer with a fragment", nil, map[string]string{"CAPIF_ISSUER": "https://ccf.example.com/#f"}},
		{"issuer not a URL", nil, map[string]string{"CAPIF_ISSUER": "capif-ccf"}},
		{"http apiRoot", []string{"-api-root", "http://capif.example.com"}, nil},
	} {
		if _, err := parseConfig(tc.args, envOf(tc.env), io.Discard); err == nil {
			t.Errorf("%s: %q %v accepted", tc.name, tc.args, tc.env)
		}
	}
}

// TestRunRejectsBadSetup: run returns an error, without ever calling ready, when it cannot serve.
func TestRunRejectsBadSetup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"client CA without certificates", []string{"-client-ca", write("empty-ca.pem", "not a pem")}},
		{"missing client CA", []string{"-client-ca", filepath.Join(dir, "absent.pem")}},
		{"registry not JSON", []string{"-registry", write("bad.json", "{")}},
		{"registry with a role clash", []string{"-registry", write("clash.json", `{"apiInvokers":[{"apiInvokerId":"x"}],"aefs":[{"aefId":"x"}]}`)}},
		{"missing registry", []string{"-registry", filepath.Join(dir, "absent.json")}},
		{"missing TLS files", []string{"-tls-cert", filepath.Join(dir, "c.pem"), "-tls-key", filepath.Join(dir, "k.pem")}},
		{"address in use", []string{"-addr", busy.Addr().String()}},
	} {
		args := append([]string{"-addr", "127.0.0.1:0", "-data", filepath.Join(dir, "data-"+strings.ReplaceAll(tc.name, " ", "-"))}, tc.args...)
		cfg, err := parseConfig(args, envOf(nil), io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ready := false
		done := make(chan error, 1)
		go func() {
			done <- run(context.Background(), cfg, slog.New(slog.DiscardHandler), func(string) { ready = true })
		}()
		select {
		case err := <-done:
			if err == nil || ready {
				t.Errorf("%s: run returned %v, ready called: %t", tc.name, err, ready)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: run kept serving", tc.name)
		}
	}
}

// TestMainServes: the command itself (mainErr) serves the example registry, logs text lines
// (no metrics: they are for CloudWatch) to stderr and stops cleanly when its context ends.
func TestMainServes(t *testing.T) {
	c := loadContract(t)
	dir := t.TempDir()
	logs := &testenv.Buffer{}
	urls := make(chan string, 1)
	stdout := writerFunc(func(p []byte) {
		if u, ok := strings.CutPrefix(strings.TrimSpace(string(p)), "capif-local listening on "); ok {
			urls <- u
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mainErr(ctx, []string{"-addr", "127.0.0.1:0", "-data", dir, "-store", "embedded", "-signer", "local",
			"-registry", filepath.Join("..", "..", "examples", "registry.json"), "-log-level", "info"}, stdout, logs)
	}()
	r := &runner{t: t, backend: backends[0], dataDir: dir, contract: c, logs: logs,
		cancel: cancel, done: done, secrets: map[string]string{"dev-secret-invoker-2": "onboarding secret"}}
	select {
	case r.url = <-urls:
		r.cfg.Issuer = r.url // the default issuer: {apiRoot}, https://ADDR here
	case err := <-done:
		t.Fatalf("mainErr returned %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("not listening within 30s")
	}
	t.Cleanup(func() { r.stop(t) })
	var err error
	if r.ca, err = devpki.LoadOrCreateCA(dir); err != nil {
		t.Fatal(err)
	}

	// The example registry works end to end.
	inv := r.as(t, "invoker-2")
	wantStatus(t, inv.create("invoker-2", serviceSecurity(someDest, aefEntry("aef-1", "", "OAUTH"), aefEntry("aef-2", "api-location", "PKI"))), http.StatusCreated)
	wantTokenErr(t, inv.tokenReq("invoker-2", grant("invoker-2")), http.StatusUnauthorized, capif.InvalidClient)
	resp := inv.tokenReq("invoker-2", grant("invoker-2", "client_secret", "dev-secret-invoker-2"))
	wantStatus(t, resp, http.StatusOK)
	if got := decode[capif.AccessTokenRsp](t, resp).Scope; got != "3gpp#aef-1:monitoring-event,qos-session" {
		t.Errorf("scope %q", got)
	}
	r.verifyToken(t, r.jwks(t), decode[capif.AccessTokenRsp](t, resp).AccessToken)
	wantStatus(t, r.as(t, "aef-2").get("invoker-2", ""), http.StatusOK)

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="registry imported" file=../../examples/registry.json apiInvokers=2 aefs=2 serviceApis=3`) {
		t.Errorf("no import summary in the log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "level=INFO msg=stopped") || strings.Contains(logs.String(), "_aws") || strings.Contains(logs.String(), `{"time"`) {
		t.Errorf("no stop record in a text log without metrics:\n%s", logs)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
