package settings_test

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/settings"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Every setting is declared once: one variable and at most one flag per setting, a doc line, a
// command that reads it.
func TestTableDeclaresEachNameOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range settings.Table {
		names := append([]string{s.Env}, s.Deprecated...)
		if s.Flag != "" {
			names = append(names, "-"+s.Flag)
		}
		for _, n := range names {
			if seen[n] {
				t.Errorf("%s is declared twice", n)
			}
			seen[n] = true
		}
		if !strings.HasPrefix(s.Env, "CAPIF_") || s.Doc == "" || s.For == 0 {
			t.Errorf("%s: incomplete declaration %+v", s.Env, s)
		}
	}
	for name := range settings.Removed {
		if seen[name] {
			t.Errorf("%s is both removed and declared", name)
		}
	}
}

// README's flag table is the settings table of the runner: same flags, variables, defaults and
// meanings, in the same order.
func TestREADMEFlagTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Runner flags")
	if !ok {
		t.Fatal("README.md has no \"## Runner flags\" section")
	}
	var got []string
	for _, line := range strings.Split(section, "\n")[1:] {
		if strings.HasPrefix(line, "## ") {
			break
		}
		if strings.HasPrefix(line, "| `-") {
			got = append(got, line)
		}
	}
	var want []string
	for _, s := range settings.Table {
		if s.For&settings.Runner == 0 || s.Flag == "" {
			continue
		}
		def := s.DefaultFor(settings.Runner)
		if def == "" {
			def = s.DefaultDoc
		}
		want = append(want, strings.ReplaceAll("| `-"+s.Flag+"` ["+s.Env+"] | "+def+" | "+s.Doc+" |", "|  |", "| |"))
	}
	if !slices.Equal(got, want) {
		t.Errorf("README.md's flag table differs from settings.Table; it should read\n%s\n\nit reads\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}

func TestLoadPrecedence(t *testing.T) {
	e := map[string]string{
		"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": "env-", "CAPIF_CONTEXTS_TABLE": "ctx", "CAPIF_TOKEN_TTL": "5m",
		"CAPIF_KMS_KEY_ID": "old", "CAPIF_KMS_KEY_IDS": "new-1, ,new-2", "CAPIF_SIGNER": "kms",
	}
	c, _, err := settings.Load(settings.Runner, nil, env(e), settings.Options{Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tables != (settings.Tables{Contexts: "ctx", Registry: "env-registry", Outbox: "env-outbox"}) || c.TokenTTL != 5*time.Minute ||
		!slices.Equal(c.KMSKeyIDs, []string{"new-1", "new-2"}) || len(c.Warnings) != 0 {
		t.Errorf("environment: %+v", c)
	}
	c, rest, err := settings.Load(settings.Admin, []string{"-table-prefix", "flag-", "-create-tables", "import", "-f", "x"}, env(e), settings.Options{Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tables != (settings.Tables{Contexts: "flag-contexts", Registry: "flag-registry", Outbox: "flag-outbox"}) || !c.CreateTables || !slices.Equal(rest, []string{"import", "-f", "x"}) {
		t.Errorf("flags: tables %+v, create %v, operands %q", c.Tables, c.CreateTables, rest)
	}
	// A setting the command does not read is neither a flag nor taken from the environment.
	if _, _, err := settings.Load(settings.Admin, []string{"-api-root", "https://x.example"}, env(e), settings.Options{Output: io.Discard}); err == nil {
		t.Error("capif-admin accepted -api-root")
	}
}

// A function reads only the environment, and gets the deployed defaults.
func TestLoadFunction(t *testing.T) {
	e := map[string]string{
		"CAPIF_CONTEXTS_TABLE": "c", "CAPIF_REGISTRY_TABLE": "r", "CAPIF_OUTBOX_TABLE": "o", "CAPIF_SIGNER": "none",
		"CAPIF_API_ROOT": "https://capif.example.com", "CAPIF_TRUSTSTORE_URI": "s3://b/k",
	}
	c, _, err := settings.Load(settings.Function, nil, env(e), settings.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != "dynamodb" || c.AllowLoopbackNotifications || c.DeadlineMargin != time.Second || c.TokenTTL != 600*time.Second ||
		c.Tables != (settings.Tables{Contexts: "c", Registry: "r", Outbox: "o"}) || c.DataDir != "" ||
		c.MetricsNamespace != "CAPIF/Security" || c.TruststoreVersion != "" {
		t.Errorf("%+v", c)
	}
}

func TestLoadFunctionMetricsAndTruststoreVersion(t *testing.T) {
	base := map[string]string{
		"CAPIF_CONTEXTS_TABLE": "c", "CAPIF_REGISTRY_TABLE": "r", "CAPIF_OUTBOX_TABLE": "o", "CAPIF_SIGNER": "none",
		"CAPIF_API_ROOT": "https://capif.example.com", "CAPIF_TRUSTSTORE_URI": "s3://b/k",
	}
	with := func(kv ...string) map[string]string {
		e := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			e[kv[i]] = kv[i+1]
		}
		return e
	}
	tests := []struct {
		name      string
		env       map[string]string
		namespace string
		version   string
		fail      string // the variable the error names
	}{
		{"defaults", base, "CAPIF/Security", "", ""},
		{"chosen", with("CAPIF_METRICS_NAMESPACE", "Acme/CAPIF core#1", "CAPIF_TRUSTSTORE_VERSION", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"), "Acme/CAPIF core#1", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", ""},
		{"AWS namespace", with("CAPIF_METRICS_NAMESPACE", "AWS/Lambda"), "", "", "CAPIF_METRICS_NAMESPACE"},
		{"bad character", with("CAPIF_METRICS_NAMESPACE", "CAPIF$"), "", "", "CAPIF_METRICS_NAMESPACE"},
		{"too long", with("CAPIF_METRICS_NAMESPACE", strings.Repeat("n", 256)), "", "", "CAPIF_METRICS_NAMESPACE"},
		{"version with a space", with("CAPIF_TRUSTSTORE_VERSION", "a b"), "", "", "CAPIF_TRUSTSTORE_VERSION"},
		{"version of a file", with("CAPIF_TRUSTSTORE_URI", "", "CAPIF_TRUSTSTORE_FILE", "/tmp/ca.pem", "CAPIF_TRUSTSTORE_VERSION", "v1"), "", "", "CAPIF_TRUSTSTORE_VERSION"},
	}
	for _, tt := range tests {
		c, _, err := settings.Load(settings.Function, nil, env(tt.env), settings.Options{})
		switch {
		case tt.fail != "":
			if err == nil || !strings.Contains(err.Error(), tt.fail) {
				t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.fail)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case c.MetricsNamespace != tt.namespace || c.TruststoreVersion != tt.version:
			t.Errorf("%s: namespace %q version %q", tt.name, c.MetricsNamespace, c.TruststoreVersion)
		}
	}
}

func TestParseList(t *testing.T) {
	for in, want := range map[string][]string{
		"": nil, " , ,": nil, "a": {"a"}, " alias/new , key-1,,": {"alias/new", "key-1"},
	} {
		if got := settings.ParseList(in); !slices.Equal(got, want) {
			t.Errorf("ParseList(%q) = %q, want %q", in, got, want)
		}
	}
}

// capif-admin has no default back end; -stack names the tables exactly as template.yaml does.
func TestLoadAdminBackEnd(t *testing.T) {
	load := func(args []string, e map[string]string) (settings.Config, error) {
		c, _, err := settings.Load(settings.Admin, args, env(e), settings.Options{Output: io.Discard})
		return c, err
	}
	c, err := load(nil, nil)
	if err != nil || c.Store != settings.StoreNone || c.DataDir != "" {
		t.Errorf("no settings: store %q, data %q, %v; want none", c.Store, c.DataDir, err)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err = load([]string{"-stack", "capif-prod"}, map[string]string{"CAPIF_CONTEXTS_TABLE": "other"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != settings.StoreDynamoDB {
		t.Errorf("-stack: store %q", c.Store)
	}
	for _, name := range []string{c.Tables.Contexts, c.Tables.Registry, c.Tables.Outbox} {
		suffix, ok := strings.CutPrefix(name, "capif-prod")
		if !ok || !strings.Contains(string(b), `TableName: !Sub "${AWS::StackName}`+suffix+`"`) {
			t.Errorf("-stack capif-prod gives table %q, which template.yaml does not name", name)
		}
	}
	// Tables named explicitly name DynamoDB too.
	for _, e := range []map[string]string{{"CAPIF_TABLE_PREFIX": "p-"}, {"CAPIF_CONTEXTS_TABLE": "c", "CAPIF_REGISTRY_TABLE": "r", "CAPIF_OUTBOX_TABLE": "o"}} {
		if c, err := load(nil, e); err != nil || c.Store != settings.StoreDynamoDB {
			t.Errorf("%v: store %q, %v", e, c.Store, err)
		}
	}
	if c, err := load(nil, map[string]string{"CAPIF_CONTEXTS_TABLE": "c"}); err != nil || c.Store != settings.StoreNone {
		t.Errorf("one explicit table: store %q, %v; want no back end", c.Store, err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-stack", "s", "-store", "embedded", "-data", "d"}, nil, "not with -store embedded"},
		{[]string{"-stack", "s"}, map[string]string{"CAPIF_TABLE_PREFIX": "p-"}, "not both"},
		{[]string{"-stack", "my stack"}, nil, "not a CloudFormation stack name"},
		{[]string{"-store", "dynamodb"}, nil, "-stack NAME"},
		{[]string{"-store", "embedded"}, nil, "CAPIF_DATA: required"},
	} {
		if _, err := load(tc.args, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %v: error %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
	// The runner keeps its defaults, and refuses an empty back end.
	if _, _, err := settings.Load(settings.Runner, []string{"-store", ""}, env(nil), settings.Options{Output: io.Discard}); err == nil {
		t.Error("the runner accepted -store \"\"")
	}
}

// Loopback notification destinations: allowed by default on the embedded store, refused on
// DynamoDB, for every command alike; the flag or the variable overrides either way.
func TestLoopbackNotificationsFollowTheStore(t *testing.T) {
	for _, tc := range []struct {
		cmd  settings.Command
		args []string
		env  map[string]string
		want bool
	}{
		{settings.Runner, nil, nil, true},
		{settings.Runner, []string{"-store", "dynamodb"}, nil, false},
		{settings.Runner, []string{"-store", "dynamodb", "-allow-loopback-notifications"}, nil, true},
		{settings.Runner, []string{"-allow-loopback-notifications=false"}, nil, false},
		{settings.Admin, []string{"-store", "embedded", "-data", "d"}, nil, true},
		{settings.Admin, []string{"-stack", "capif-prod"}, nil, false},
		{settings.Admin, []string{"-stack", "capif-prod"}, map[string]string{"CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": "true"}, true},
		{settings.Worker, nil, map[string]string{"CAPIF_TABLE_PREFIX": "p-"}, false},
	} {
		c, _, err := settings.Load(tc.cmd, tc.args, env(tc.env), settings.Options{Output: io.Discard})
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if c.AllowLoopbackNotifications != tc.want {
			t.Errorf("%v %v: loopback %v, want %v", tc.args, tc.env, c.AllowLoopbackNotifications, tc.want)
		}
	}
}

// kms-envelope needs its wrapping key everywhere, and on Lambda the stack its keys are bound to;
// the runner binds its keys to "local".
func TestLoadEnvelopeSigner(t *testing.T) {
	fn := map[string]string{
		"CAPIF_CONTEXTS_TABLE": "c", "CAPIF_REGISTRY_TABLE": "r", "CAPIF_OUTBOX_TABLE": "o", "CAPIF_SIGNER": "kms-envelope",
		"CAPIF_API_ROOT": "https://capif.example.com", "CAPIF_TRUSTSTORE_URI": "s3://b/k",
		"CAPIF_KMS_WRAPPING_KEY": "alias/wrap", "CAPIF_STACK": "capif-prod",
	}
	c, _, err := settings.Load(settings.Function, nil, env(fn), settings.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Signer != settings.SignerKMSEnvelope || c.KMSWrappingKey != "alias/wrap" || c.Stack != "capif-prod" || c.KeySetRefresh != time.Minute {
		t.Errorf("%+v", c)
	}
	for _, missing := range []string{"CAPIF_KMS_WRAPPING_KEY", "CAPIF_STACK"} {
		e := maps.Clone(fn)
		delete(e, missing)
		if _, _, err := settings.Load(settings.Function, nil, env(e), settings.Options{}); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: %v", missing, err)
		}
	}
	c, _, err = settings.Load(settings.Runner, []string{"-signer", "kms-envelope", "-kms-wrapping-key", "k", "-keyset-refresh", "5s"}, env(nil), settings.Options{Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if c.Stack != "local" || c.KeySetRefresh != 5*time.Second {
		t.Errorf("runner: stack %q refresh %v", c.Stack, c.KeySetRefresh)
	}
	if _, _, err := settings.Load(settings.Runner, []string{"-signer", "kms-envelope"}, env(nil), settings.Options{Output: io.Discard}); err == nil || !strings.Contains(err.Error(), "CAPIF_KMS_WRAPPING_KEY") {
		t.Errorf("runner without a wrapping key: %v", err)
	}
}

// The rotation function reads its tables, wrapping key, stack and rotation age from the
// environment, and needs the first two.
func TestLoadRotator(t *testing.T) {
	e := map[string]string{
		"CAPIF_CONTEXTS_TABLE": "c", "CAPIF_REGISTRY_TABLE": "r", "CAPIF_OUTBOX_TABLE": "o",
		"CAPIF_KMS_WRAPPING_KEY": "alias/wrap", "CAPIF_STACK": "capif-prod",
	}
	c, _, err := settings.Load(settings.Rotator, nil, env(e), settings.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != settings.StoreDynamoDB || c.KeyRotationAge != 30*24*time.Hour || c.Tables.Registry != "r" || c.TokenTTL != 10*time.Minute || c.KeySetRefresh != time.Minute {
		t.Errorf("%+v", c)
	}
	for name, change := range map[string][2]string{
		"no wrapping key": {"CAPIF_KMS_WRAPPING_KEY", ""}, "no stack": {"CAPIF_STACK", ""},
		"zero days": {"CAPIF_KEY_ROTATION_DAYS", "0"}, "not a number": {"CAPIF_KEY_ROTATION_DAYS", "30d"},
	} {
		bad := maps.Clone(e)
		bad[change[0]] = change[1]
		if _, _, err := settings.Load(settings.Rotator, nil, env(bad), settings.Options{}); err == nil || !strings.Contains(err.Error(), change[0]) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Wrapped keys are bound to a stack: the runner and capif-admin name the same one for the same
// tables (-stack NAME and -table-prefix NAME- alike), and "local" on the embedded store.
func TestStackOfTheKeys(t *testing.T) {
	for _, tc := range []struct {
		cmd  settings.Command
		args []string
		want string
	}{
		{settings.Runner, nil, "local"},
		{settings.Runner, []string{"-store", "dynamodb"}, "capif"},
		{settings.Runner, []string{"-store", "dynamodb", "-table-prefix", "suite-1-"}, "suite-1"},
		{settings.Admin, []string{"-stack", "capif-prod"}, "capif-prod"},
		{settings.Admin, []string{"-table-prefix", "capif-prod-"}, "capif-prod"},
		{settings.Admin, []string{"-store", "embedded", "-data", "d"}, "local"},
	} {
		c, _, err := settings.Load(tc.cmd, tc.args, env(nil), settings.Options{Output: io.Discard})
		if err != nil || c.Stack != tc.want {
			t.Errorf("%v: stack %q, %v; want %q", tc.args, c.Stack, err, tc.want)
		}
	}
	// Tables named one by one name no stack, for the runner as for capif-admin.
	named := map[string]string{"CAPIF_CONTEXTS_TABLE": "c", "CAPIF_REGISTRY_TABLE": "r", "CAPIF_OUTBOX_TABLE": "o"}
	for _, cmd := range []settings.Command{settings.Runner, settings.Admin} {
		args := []string{"-store", "dynamodb"}
		if cmd == settings.Runner {
			args = append(args, "-signer", "kms", "-kms-key-ids", "k")
		}
		c, _, err := settings.Load(cmd, args, env(named), settings.Options{Output: io.Discard})
		if err != nil || c.Stack != "" || c.Tables.Registry != "r" {
			t.Errorf("command %d, tables named one by one: stack %q, tables %+v, %v", cmd, c.Stack, c.Tables, err)
		}
	}
	// ... so a runner whose keys are wrapped needs its tables named by a prefix.
	_, _, err := settings.Load(settings.Runner, []string{"-store", "dynamodb", "-signer", "local"}, env(named), settings.Options{Output: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "CAPIF_TABLE_PREFIX: required with the local signer") {
		t.Errorf("the local signer on tables named one by one: %v", err)
	}
}
