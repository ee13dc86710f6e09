package lambdaapp_test

import (
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go/logging"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/lambdaapp"
)

// The environment a deployed function gets from template.yaml.
func deployedEnv() map[string]string {
	return map[string]string{
		"CAPIF_TABLE_PREFIX":   "capif-prod-",
		"CAPIF_KMS_KEY_IDS":    "1234abcd-12ab-34cd-56ef-1234567890ab, 0987dcba-09fe-87dc-65ba-ab0987654321",
		"CAPIF_CCF_ID":         "ccf-1",
		"CAPIF_API_ROOT":       "https://capif.example.com/",
		"CAPIF_TOKEN_TTL":      "900s",
		"CAPIF_TRUSTSTORE_URI": "s3://trust-bucket/mtls/truststore.pem",
	}
}

func TestConfigFromEnv(t *testing.T) {
	c, err := lambdaapp.ConfigFromEnv(mapEnv(deployedEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.App.Store != "dynamodb" || c.App.Signer != "kms" || c.App.TablePrefix != "capif-prod-" || c.App.CCFID != "ccf-1" {
		t.Errorf("adapters %+v", c.App)
	}
	if want := []string{"1234abcd-12ab-34cd-56ef-1234567890ab", "0987dcba-09fe-87dc-65ba-ab0987654321"}; !reflect.DeepEqual(c.App.KMSKeyIDs, want) {
		t.Errorf("key ids %q", c.App.KMSKeyIDs)
	}
	if c.App.APIRoot != "https://capif.example.com" || c.App.TokenTTL != 900*time.Second {
		t.Errorf("apiRoot %q, TTL %v", c.App.APIRoot, c.App.TokenTTL)
	}
	if c.Truststore != (lambdaapp.TruststoreLocation{Bucket: "trust-bucket", Key: "mtls/truststore.pem"}) {
		t.Errorf("truststore %+v", c.Truststore)
	}
	if c.DeadlineMargin != time.Second || c.App.AllowLoopbackNotifications || c.App.CreateTables {
		t.Errorf("defaults: margin %v, loopback %v, create tables %v", c.DeadlineMargin, c.App.AllowLoopbackNotifications, c.App.CreateTables)
	}
	if c.App.ClientCAPEM != "" {
		t.Error("ClientCAPEM must come from the truststore on the first request, not the environment")
	}
}

func TestConfigFromEnvRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(m map[string]string)
		wants []string // every one must be named in the error
	}{
		{"nothing set", func(m map[string]string) { clear(m) }, []string{"CAPIF_TABLE_PREFIX", "CAPIF_KMS_KEY_IDS", "CAPIF_CCF_ID", "CAPIF_API_ROOT", "CAPIF_TRUSTSTORE_URI"}},
		{"both truststores", func(m map[string]string) { m["CAPIF_TRUSTSTORE_FILE"] = "/tmp/ca.pem" }, []string{"CAPIF_TRUSTSTORE_URI"}},
		{"truststore not s3", func(m map[string]string) { m["CAPIF_TRUSTSTORE_URI"] = "https://bucket/key" }, []string{"CAPIF_TRUSTSTORE_URI"}},
		{"truststore without key", func(m map[string]string) { m["CAPIF_TRUSTSTORE_URI"] = "s3://bucket/" }, []string{"CAPIF_TRUSTSTORE_URI"}},
		{"http apiRoot", func(m map[string]string) { m["CAPIF_API_ROOT"] = "http://capif.example.com" }, []string{"CAPIF_API_ROOT"}},
		{"apiRoot with a path", func(m map[string]string) { m["CAPIF_API_ROOT"] = "https://capif.example.com/v1" }, []string{"CAPIF_API_ROOT"}},
		{"bad TTL", func(m map[string]string) { m["CAPIF_TOKEN_TTL"] = "-5s" }, []string{"CAPIF_TOKEN_TTL"}},
		{"bad margin", func(m map[string]string) { m["CAPIF_DEADLINE_MARGIN"] = "soon" }, []string{"CAPIF_DEADLINE_MARGIN"}},
		{"bad store", func(m map[string]string) { m["CAPIF_STORE"] = "bbolt" }, []string{"CAPIF_STORE"}},
		{"bad signer", func(m map[string]string) { m["CAPIF_SIGNER"] = "hsm" }, []string{"CAPIF_SIGNER"}},
		{"embedded without data dir", func(m map[string]string) { m["CAPIF_STORE"] = "embedded" }, []string{"CAPIF_DATA"}},
		{"bad log level", func(m map[string]string) { m["CAPIF_LOG_LEVEL"] = "loud" }, []string{"CAPIF_LOG_LEVEL"}},
		{"bad loopback flag", func(m map[string]string) { m["CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"] = "maybe" }, []string{"CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := deployedEnv()
			tc.edit(env)
			_, err := lambdaapp.ConfigFromEnv(mapEnv(env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// The SDK's own log lines become JSON with the right level.
func TestSDKLogger(t *testing.T) {
	var buf strings.Builder
	l := app.SDKLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Logf(logging.Warn, "failed to close HTTP response body, %d", 7)
	l.Logf(logging.Debug, "retrying")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var first, second map[string]any
	if json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("not JSON: %s", buf.String())
	}
	if first["level"] != "WARN" || first["msg"] != "failed to close HTTP response body, 7" || first["source"] != "aws-sdk" || second["level"] != "DEBUG" {
		t.Errorf("%v %v", first, second)
	}
}
