package lambdaapp_test

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/lambdaapp"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
)

// The environment a deployed function gets from template.yaml.
func deployedEnv() map[string]string {
	return map[string]string{
		"CAPIF_TABLE_PREFIX":   "capif-prod-",
		"CAPIF_KMS_KEY_IDS":    "1234abcd-12ab-34cd-56ef-1234567890ab, 0987dcba-09fe-87dc-65ba-ab0987654321",
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
	s := c.Settings
	if s.Store != "dynamodb" || s.Signer != "kms" || ddbstore.Tables(s.Tables) != ddbstore.TablesWithPrefix("capif-prod-") || s.Issuer != "https://capif.example.com" {
		t.Errorf("adapters %+v", s)
	}
	if want := []string{"1234abcd-12ab-34cd-56ef-1234567890ab", "0987dcba-09fe-87dc-65ba-ab0987654321"}; !reflect.DeepEqual(s.KMSKeyIDs, want) {
		t.Errorf("key ids %q", s.KMSKeyIDs)
	}
	if s.APIRoot != "https://capif.example.com" || s.TokenTTL != 900*time.Second {
		t.Errorf("apiRoot %q, TTL %v", s.APIRoot, s.TokenTTL)
	}
	if c.Truststore != (lambdaapp.Location{Bucket: "trust-bucket", Key: "mtls/truststore.pem"}) {
		t.Errorf("truststore %+v", c.Truststore)
	}
	if s.DeadlineMargin != time.Second || s.AllowLoopbackNotifications || s.CreateTables || s.LogLevel != slog.LevelInfo {
		t.Errorf("defaults: margin %v, loopback %v, create tables %v, log level %v", s.DeadlineMargin, s.AllowLoopbackNotifications, s.CreateTables, s.LogLevel)
	}
}

// The template's explicit table names; an explicit issuer; the deprecated key variable.
func TestConfigFromEnvTemplateShape(t *testing.T) {
	env := deployedEnv()
	delete(env, "CAPIF_TABLE_PREFIX")
	delete(env, "CAPIF_KMS_KEY_IDS")
	env["CAPIF_CONTEXTS_TABLE"], env["CAPIF_REGISTRY_TABLE"], env["CAPIF_OUTBOX_TABLE"] = "s-contexts", "s-registry", "s-outbox"
	env["CAPIF_KMS_KEY_ID"] = "alias/old"
	env["CAPIF_ISSUER"] = "https://issuer.example.com/ccf"
	c, err := lambdaapp.ConfigFromEnv(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	if ddbstore.Tables(c.Settings.Tables) != (ddbstore.Tables{Contexts: "s-contexts", Registry: "s-registry", Outbox: "s-outbox"}) ||
		c.Settings.Issuer != "https://issuer.example.com/ccf" || !reflect.DeepEqual(c.Settings.KMSKeyIDs, []string{"alias/old"}) ||
		len(c.Settings.Warnings) != 1 || !strings.Contains(c.Settings.Warnings[0], "CAPIF_KMS_KEY_IDS") {
		t.Errorf("%+v", c.Settings)
	}
}

func TestConfigFromEnvRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(m map[string]string)
		wants []string // every one must be named in the error
	}{
		{"nothing set", func(m map[string]string) { clear(m) }, []string{"CAPIF_TABLE_PREFIX", "CAPIF_KMS_KEY_IDS", "CAPIF_API_ROOT", "CAPIF_TRUSTSTORE_URI"}},
		{"two explicit tables only", func(m map[string]string) {
			delete(m, "CAPIF_TABLE_PREFIX")
			m["CAPIF_CONTEXTS_TABLE"], m["CAPIF_REGISTRY_TABLE"] = "c", "r"
		}, []string{"CAPIF_TABLE_PREFIX"}},
		{"issuer not an https URL", func(m map[string]string) { m["CAPIF_ISSUER"] = "capif-ccf" }, []string{"CAPIF_ISSUER"}},
		{"issuer with a query", func(m map[string]string) { m["CAPIF_ISSUER"] = "https://capif.example.com/?x=1" }, []string{"CAPIF_ISSUER"}},
		{"issuer with a fragment", func(m map[string]string) { m["CAPIF_ISSUER"] = "https://capif.example.com/#x" }, []string{"CAPIF_ISSUER"}},
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
