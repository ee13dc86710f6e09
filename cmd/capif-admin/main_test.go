package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/store/embedded"
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

// adminIO runs the command with env and returns stdout and stderr apart.
func adminIO(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = mainErr(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// No command that touches a store runs without being told which one: nothing is created in the
// working directory and no AWS call is made.
func TestAdminNeedsABackEnd(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	example := filepath.Join(testenv.RepoRoot(), "examples", "registry.json")
	for _, c := range commands {
		if !c.store {
			continue
		}
		args := []string{c.name, "x"}
		if c.name == "import" {
			args = []string{c.name, "-f", example}
		}
		_, _, err := adminIO(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "no back end named") || !strings.Contains(err.Error(), "-stack NAME") {
			t.Errorf("%v: error %v, want the back-end flags named", args, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the working directory gained %v", entries)
	}
}

func TestAdminHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"import -f FILE", "remove-invoker ID", "remove-aef ID", "remove-api ID", "help [COMMAND]", "-stack", "-store embedded -data DIR"}},
		{[]string{"help"}, []string{"remove-api ID", "-table-prefix"}},
		{[]string{"help", "import"}, []string{"capif-admin [flags] import -f FILE", "-f string", "-dry-run", "-stack"}},
		{[]string{"import", "-h"}, []string{"capif-admin [flags] import -f FILE", "-dry-run"}},
		{[]string{"-store", "embedded", "help", "remove-api"}, []string{"remove-api ID", "notifications", "-dry-run"}},
	} {
		out, _, err := adminIO(t, nil, tc.args...)
		if err != nil {
			t.Errorf("%q: %v (help is not an error)", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: output lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
	if _, _, err := adminIO(t, nil, "help", "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("help frobnicate: %v", err)
	}
	if _, _, err := adminIO(t, nil); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Errorf("no command: %v", err)
	}
}

// -dry-run checks the input and prints the target, and opens nothing.
func TestAdminDryRunEmbedded(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	example := filepath.Join(testenv.RepoRoot(), "examples", "registry.json")
	env := map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": data}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "-dry-run", "-f", example}, "holds 2 API invokers, 2 AEFs, 3 service APIs and is valid; nothing written"},
		{[]string{"remove-invoker", "-dry-run", "invoker-1"}, "would remove-invoker invoker-1"},
		{[]string{"-dry-run", "remove-api", "api-location"}, "would remove-api api-location"},
	} {
		out, _, err := adminIO(t, env, tc.args...)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !strings.Contains(out, "on the embedded store in "+data+" (dry run") || !strings.Contains(out, tc.want) {
			t.Errorf("%q: output %q, want the data dir and %q", tc.args, out, tc.want)
		}
	}
	// Back-end flags after the command name work too.
	out, _, err := adminIO(t, nil, "remove-aef", "-store", "embedded", "-data", data, "-dry-run", "aef-1")
	if err != nil || !strings.Contains(out, "would remove-aef aef-1") {
		t.Errorf("flags after the command: %q, %v", out, err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dry run created %s (%v)", data, err)
	}
	// A dry run still refuses a bad document.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"aefs": [{"aefId": "a", "aefName": "x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := adminIO(t, env, "import", "-dry-run", "-f", bad); err == nil || !strings.Contains(err.Error(), `1:26: aefs[0].aefName: unknown member`) {
		t.Errorf("bad document: %v", err)
	}
}

// The DynamoDB target: region, endpoint override, the stack's tables, and the account only when
// STS answers (never asked for a local endpoint override).
func TestAdminDryRunDynamoDBTarget(t *testing.T) {
	t.Setenv("AWS_REGION", "eu-west-3")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	asked := 0
	account, accountErr := "", error(nil)
	old := callerAccount
	t.Cleanup(func() { callerAccount = old })
	callerAccount = func(context.Context, aws.Config) (string, error) { asked++; return account, accountErr }

	tables := "  tables    prod-contexts, prod-registry, prod-outbox\n"
	for _, tc := range []struct {
		name, endpoint, account string
		accountErr              error
		want, notWant           []string
		wantAsked               int
	}{
		{"local override", "http://127.0.0.1:8000", "", nil,
			[]string{"remove-invoker on DynamoDB (dry run", "  region    eu-west-3\n", "  endpoint  http://127.0.0.1:8000 (override)\n", tables}, []string{"account"}, 0},
		{"STS answers", "", "123456789012", nil, []string{"  region    eu-west-3\n", tables, "  account   123456789012\n"}, []string{"endpoint"}, 1},
		{"STS does not answer", "", "", errors.New("no credentials"), []string{tables}, []string{"account", "endpoint"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", tc.endpoint)
			asked, account, accountErr = 0, tc.account, tc.accountErr
			out, _, err := adminIO(t, nil, "-stack", "prod", "remove-invoker", "-dry-run", "invoker-1")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if asked != tc.wantAsked {
				t.Errorf("STS asked %d times, want %d", asked, tc.wantAsked)
			}
		})
	}
}

// A large import shows its progress and a summary, and every record arrives.
func TestAdminImportProgress(t *testing.T) {
	dir := t.TempDir()
	var doc security.RegistryDoc
	for i := range 250 {
		doc.APIInvokers = append(doc.APIInvokers, security.InvokerRecord{APIInvokerID: fmt.Sprintf("inv-%d", i)})
	}
	for i := range 150 {
		doc.AEFs = append(doc.AEFs, security.AEFRecord{AefID: fmt.Sprintf("aef-%d", i)})
	}
	for i := range 120 {
		doc.ServiceAPIs = append(doc.ServiceAPIs, capif.ServiceAPIDescription{APIName: fmt.Sprintf("api%d", i), APIID: fmt.Sprintf("api-%d", i),
			AefProfiles: []capif.AefProfile{{AefID: fmt.Sprintf("aef-%d", i%150), DomainName: fmt.Sprintf("aef%d.example.com", i)}}})
	}
	b, _ := json.Marshal(doc)
	file := filepath.Join(dir, "large.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": dir}
	out, errOut, err := adminIO(t, env, "import", "-f", file)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, w := range []string{"import: 100/520 records (19%)", "import: 400/520 records (76%)", "import: 520/520 records (100%)"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("progress lacks %q:\n%s", w, errOut)
		}
	}
	if !strings.Contains(out, "imported 250 API invokers, 150 AEFs, 120 service APIs from "+file) {
		t.Errorf("summary: %q", out)
	}
	// The last records of each kind are there.
	for _, args := range [][]string{{"remove-api", "api-119"}, {"remove-invoker", "inv-249"}, {"remove-aef", "aef-149"}} {
		if _, _, err := adminIO(t, env, args...); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// A data directory held by another process is named as such.
func TestAdminLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	db, err := embedded.Open(filepath.Join(dir, "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, _, err = adminIO(t, map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": dir}, "remove-invoker", "x")
	if err == nil || !strings.Contains(err.Error(), "another process holds the data directory "+dir) {
		t.Errorf("error %v, want the lock holder named", err)
	}
}

// seedOutbox writes, through the store the admin command would open, a context's revocation
// owing two notifications: one pending, one dead-lettered. Their destination path and the
// revoked access token must never be shown.
func seedOutbox(t *testing.T, env map[string]string) (pending, dead string) {
	t.Helper()
	cfg, _, err := settings.Load(settings.Admin, nil, func(k string) string { return env[k] }, settings.Options{Name: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Signer = settings.SignerNone
	cfg.CreateTables = cfg.Store == settings.StoreDynamoDB
	a, err := fullapp.Open(context.Background(), app.Config{Settings: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	sc := &security.SecurityContext{APIInvokerID: "inv-outbox", NotificationDestination: "https://inv.example.com/secret-path?k=s3cret",
		Entries: []security.Entry{{AefID: "aef-1", SelSecurityMethod: "PKI", PrefSecurityMethods: []string{"PKI"}, Targets: []security.Target{{AefID: "aef-1", APIID: "api-1", APIName: "a"}}}}}
	if err := a.Store.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	owe := func(id string) security.Owed {
		return security.Owed{ID: id, APIInvokerID: sc.APIInvokerID, Destination: sc.NotificationDestination, CreatedAt: now, WindowFrom: now, NextAttempt: now,
			Notification: capif.SecurityNotification{APIInvokerID: sc.APIInvokerID, AefID: "aef-1", APIIDs: []string{"api-1"}, Cause: capif.OtherReason, AccessToken: "eyJ.secret-token.sig"}}
	}
	p, d := owe("owed-pending"), owe("owed-dead")
	sc.Entries = nil
	if err := a.Store.Replace(ctx, sc, []security.Owed{p, d}); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.Claim(ctx, d, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	d.Attempts, d.Dead, d.LastError = 1, true, "destination answered 410 Gone"
	if err := a.Store.Attempted(ctx, d, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return p.ID, d.ID
}

func outboxSteps(t *testing.T, env map[string]string) {
	pending, dead := seedOutbox(t, env)
	run := func(args ...string) string {
		t.Helper()
		out, err := adminEnv(t, env, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if strings.Contains(out, "secret-token") || strings.Contains(out, "secret-path") || strings.Contains(out, "s3cret") {
			t.Fatalf("%v shows a secret: %s", args, out)
		}
		return out
	}
	out := run("outbox-list")
	if !strings.Contains(out, pending) || !strings.Contains(out, dead) || !strings.Contains(out, "https://inv.example.com") || !strings.Contains(out, "410 Gone") || !strings.Contains(out, "2 notifications") {
		t.Fatalf("outbox-list:\n%s", out)
	}
	if out := run("outbox-list", "-dead"); strings.Contains(out, pending) || !strings.Contains(out, dead) {
		t.Fatalf("outbox-list -dead:\n%s", out)
	}
	if out := run("outbox-redrive", "-dry-run", dead); !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %s", out)
	}
	if out := run("outbox-list", "-dead"); !strings.Contains(out, dead) {
		t.Fatal("a dry run redrove")
	}
	run("outbox-redrive", dead)
	if out := run("outbox-list", "-dead"); strings.Contains(out, dead) {
		t.Fatalf("still dead after redrive:\n%s", out)
	}
	if out := run("outbox-redrive", "-all"); !strings.Contains(out, "0 redriven") {
		t.Fatalf("redrive -all: %s", out)
	}
	if _, err := adminEnv(t, env, "outbox-redrive", pending); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("redrive of a live record: %v", err)
	}
	run("outbox-drop", pending)
	if _, err := adminEnv(t, env, "outbox-drop", pending); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("second drop: %v", err)
	}
	if out := run("outbox-list"); strings.Contains(out, pending) || !strings.Contains(out, "1 notifications") {
		t.Fatalf("after drop:\n%s", out)
	}
}

// The outbox commands on the embedded store and on DynamoDB Local.
func TestAdminOutbox(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		outboxSteps(t, map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": t.TempDir()})
	})
	t.Run("dynamodb", func(t *testing.T) {
		testenv.DynamoDBEndpoint(t)
		var b [4]byte
		_, _ = rand.Read(b[:])
		outboxSteps(t, map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_TABLE_PREFIX": "outbox-" + hex.EncodeToString(b[:]) + "-"})
	})
}

// An operand that begins with "-" (an outbox id written before ids began with a letter) is
// given after "--", as the help says.
func TestAdminOperandAfterDoubleDash(t *testing.T) {
	dir := t.TempDir()
	out, err := admin(t, dir, "outbox-drop", "--", "-old-id")
	if err == nil || !strings.Contains(err.Error(), `"-old-id"`) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("outbox-drop -- -old-id: %v\n%s", err, out)
	}
}

// On the embedded store (the runner's, whose examples notify 127.0.0.1) capif-admin delivers to
// loopback destinations as the runner does; CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS=false refuses
// them, and the notification is dead-lettered instead.
func TestAdminRemoveNotifiesLoopbackOnEmbedded(t *testing.T) {
	for _, tc := range []struct {
		loopback string
		want     int // notifications the destination receives
	}{{"", 1}, {"false", 0}} {
		t.Run("loopback="+tc.loopback, func(t *testing.T) {
			var got atomic.Int64
			dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { got.Add(1); w.WriteHeader(http.StatusNoContent) }))
			defer dest.Close()
			env := map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": t.TempDir(), "CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS": tc.loopback}
			if out, err := adminEnv(t, env, "import", "-f", filepath.Join(testenv.RepoRoot(), "examples", "registry.json")); err != nil {
				t.Fatalf("import: %v\n%s", err, out)
			}
			cfg, _, err := settings.Load(settings.Admin, nil, func(k string) string { return env[k] }, settings.Options{Name: "seed"})
			if err != nil {
				t.Fatal(err)
			}
			a, err := fullapp.Open(context.Background(), app.Config{Settings: cfg})
			if err != nil {
				t.Fatal(err)
			}
			sc := &security.SecurityContext{APIInvokerID: "invoker-1", NotificationDestination: dest.URL + "/notifications",
				Entries: []security.Entry{{AefID: "aef-1", APIID: "api-monitoring-event", SelSecurityMethod: capif.OAUTH, PrefSecurityMethods: []string{capif.OAUTH},
					Targets: []security.Target{{AefID: "aef-1", APIID: "api-monitoring-event", APIName: "monitoring-event"}}}}}
			err = a.Store.Create(context.Background(), sc)
			_ = a.Close()
			if err != nil {
				t.Fatal(err)
			}
			if out, err := adminEnv(t, env, "remove-api", "api-monitoring-event"); err != nil {
				t.Fatalf("remove-api: %v\n%s", err, out)
			}
			if n := got.Load(); n != int64(tc.want) {
				t.Errorf("the loopback destination got %d notifications, want %d", n, tc.want)
			}
			out, err := adminEnv(t, env, "outbox-list", "-dead")
			if err != nil {
				t.Fatal(err)
			}
			if dead := strings.Contains(out, "dead"); dead != (tc.want == 0) {
				t.Errorf("outbox-list -dead:\n%s", out)
			}
		})
	}
}

// registrySteps: export, import into an empty store, export again: the same bytes; list shows
// every record and no secret; import -prune removes what the file omits (and -dry-run only says
// so); none of them touches anything but invokers, AEFs and service APIs.
func registrySteps(t *testing.T, env, empty map[string]string) {
	run := func(env map[string]string, args ...string) string {
		t.Helper()
		out, err := adminEnv(t, env, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	example := filepath.Join(testenv.RepoRoot(), "examples", "registry.json")
	run(env, "import", "-f", example)
	first := run(env, "export")
	if strings.Contains(first, "dev-secret-invoker-2") || !strings.Contains(first, `"onboardingSecretSha256": "`) {
		t.Fatalf("export shows a secret, or no hash:\n%s", first)
	}
	file := filepath.Join(t.TempDir(), "exported.json")
	run(env, "export", "-o", file)
	if b, err := os.ReadFile(file); err != nil || string(b) != first {
		t.Fatalf("export -o wrote %q (%v), not what export printed", b, err)
	}
	run(empty, "import", "-f", file)
	if again := run(empty, "export"); again != first {
		t.Fatalf("export, import, export differ:\n%s\n---\n%s", first, again)
	}
	out := run(empty, "list")
	for _, want := range []string{"invoker-1", "invoker-2", "aef-1", "aef-2", "api-location", "monitoring-event", "3 service APIs"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dev-secret") || strings.Contains(out, "/notifications") {
		t.Errorf("list shows a secret or a destination path:\n%s", out)
	}

	// A document without invoker-1, aef-2 and its API.
	var doc map[string]any
	b, _ := os.ReadFile(example)
	_ = json.Unmarshal(b, &doc)
	doc["apiInvokers"] = doc["apiInvokers"].([]any)[1:]
	doc["aefs"] = doc["aefs"].([]any)[:1]
	doc["serviceApis"] = doc["serviceApis"].([]any)[:2]
	smaller := filepath.Join(t.TempDir(), "smaller.json")
	b, _ = json.Marshal(doc)
	if err := os.WriteFile(smaller, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out = run(env, "import", "-dry-run", "-prune", "-f", smaller)
	if !strings.Contains(out, "would remove 1 service APIs: api-location") || !strings.Contains(out, "would remove 1 API invokers: invoker-1") ||
		!strings.Contains(out, "would remove 1 AEFs: aef-2") {
		t.Fatalf("import -prune -dry-run:\n%s", out)
	}
	if run(env, "export") != first {
		t.Fatal("a dry run changed the registry")
	}
	out = run(env, "import", "-prune", "-f", smaller)
	if !strings.Contains(out, "removed 1 AEFs: aef-2") {
		t.Fatalf("import -prune:\n%s", out)
	}
	out = run(env, "list")
	if strings.Contains(out, "invoker-1") || strings.Contains(out, "aef-2") || strings.Contains(out, "api-location") || !strings.Contains(out, "1 API invokers") {
		t.Fatalf("after the prune:\n%s", out)
	}
	if out := run(env, "import", "-prune", "-f", smaller); !strings.Contains(out, "removed nothing") {
		t.Fatalf("a second prune:\n%s", out)
	}
}

func TestAdminRegistryRoundTrip(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		registrySteps(t, map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": t.TempDir()},
			map[string]string{"CAPIF_STORE": "embedded", "CAPIF_DATA": t.TempDir()})
	})
	t.Run("dynamodb", func(t *testing.T) {
		testenv.DynamoDBEndpoint(t)
		env := func() map[string]string {
			var b [4]byte
			_, _ = rand.Read(b[:])
			return map[string]string{"CAPIF_STORE": "dynamodb", "CAPIF_CREATE_TABLES": "true", "CAPIF_TABLE_PREFIX": "registry-" + hex.EncodeToString(b[:]) + "-"}
		}
		registrySteps(t, env(), env())
	})
}
