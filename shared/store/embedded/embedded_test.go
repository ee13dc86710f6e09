package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/storetest"
)

func openTemp(tb testing.TB) *DB {
	tb.Helper()
	db, err := Open(filepath.Join(tb.TempDir(), "capif.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// admin runs the registry rules on db, as the admin command does.
func admin(db *DB) *security.Service {
	return security.New(db, db, nil, &securitytest.Notifier{}, nil, security.Config{})
}

func backend(db, keys *DB) storetest.Backend {
	return storetest.Backend{Store: db, Registry: db, Pending: db.Pending, KeySet: keys}
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { db := openTemp(t); return backend(db, db) })
}

// The suite's ids are unique per subtest, so it must also pass with one file for all of them,
// which is how a shared DynamoDB table runs it. The key set has one key per file: each subtest
// gets a file of its own for it.
func TestContractSharedFile(t *testing.T) {
	db := openTemp(t)
	storetest.Run(t, func(t *testing.T) storetest.Backend { return backend(db, openTemp(t)) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) storetest.Backend { db := openTemp(b); return backend(db, db) })
}

// TestRestart: everything written survives closing and reopening the file.
func TestRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "data", "capif.db") // the parent is created by Open
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	port := 443
	ifc := capif.InterfaceDescription{Fqdn: "aef.example.com", Port: &port, APIPrefix: "/x"}
	doc := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv", NotificationDestination: "https://inv.example.com/cb", OnboardingSecret: "s"}},
		AEFs:        []security.AEFRecord{{AefID: "aef"}},
		ServiceAPIs: []capif.ServiceAPIDescription{{APIName: "n", APIID: "api", AefProfiles: []capif.AefProfile{
			{AefID: "aef", SecurityMethods: []capif.SecurityMethod{capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{ifc}}}}},
	}
	if err := admin(db).ImportRegistry(ctx, doc); err != nil {
		t.Fatal(err)
	}
	sc := &security.SecurityContext{APIInvokerID: "inv", NotificationDestination: "https://inv.example.com/cb", Entries: []security.Entry{
		{AefID: "aef", PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH}, SelSecurityMethod: capif.OAUTH, Targets: []security.Target{{AefID: "aef", APIID: "api", APIName: "n"}}},
		{AefID: "aef", APIID: "api", PrefSecurityMethods: []capif.SecurityMethod{capif.PSK}, SelSecurityMethod: capif.PSK, PSK: "k", Targets: []security.Target{{AefID: "aef", APIID: "api", APIName: "n"}}},
	}}
	if err := db.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	sc.Entries = sc.Entries[:1]
	owed := []security.Owed{{ID: "o1", APIInvokerID: "inv", Destination: sc.NotificationDestination,
		Notification: capif.SecurityNotification{APIInvokerID: "inv", AefID: "aef", APIIDs: []string{"api"}, Cause: capif.OverlimitUsage}}}
	if err := db.Replace(ctx, sc, owed); err != nil {
		t.Fatal(err)
	}
	q := security.Query{CallerID: "inv", APIInvokerID: "inv", AefIDs: []string{"aef"}, InterfaceKeys: []string{security.InterfaceKey(ifc)}}
	before, err := db.Load(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if before.Caller == nil || before.Context == nil || before.AEFs["aef"] == nil || before.Interfaces[security.InterfaceKey(ifc)] == nil {
		t.Fatalf("incomplete snapshot before restart: %+v", before)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	after, err := db.Load(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after restart Load = %+v, want %+v", after, before)
	}
	if after.Context.Version != 2 {
		t.Errorf("version after restart = %d, want 2", after.Context.Version)
	}
	pending, err := db.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pending, owed) {
		t.Errorf("outbox after restart = %+v, want %+v", pending, owed)
	}
	// The optimistic lock carries on from the persisted version.
	stale := *after.Context
	stale.Version = 1
	if err := db.Replace(ctx, &stale, nil); !errors.Is(err, security.ErrConflict) {
		t.Errorf("Replace at a pre-restart version = %v, want ErrConflict", err)
	}
	// The registry's write side works on the reopened file (it needs the stored API to unpublish).
	if _, err := admin(db).RemoveAPI(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if snap, err := db.Load(ctx, q); err != nil || snap.AEFs["aef"] != nil || len(snap.Interfaces) != 0 {
		t.Errorf("after RemoveAPI Load = %+v, %v; want no catalogue and no interface", snap, err)
	}
}

// Contexts hold pre-shared keys: the file must not be readable by others.
func TestFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "capif.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeDir); got&^want != 0 {
			t.Errorf("%s mode = %v, want at most %v", p, got, want)
		}
	}
}

// A second Open of a file in use fails after the lock timeout instead of hanging.
func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capif.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if other, err := Open(path); err == nil {
		other.Close()
		t.Fatal("a second Open of a locked file succeeded")
	}
}

// A file written by an incompatible layout is refused rather than misread.
func TestSchemaMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capif.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return m.Put(keySchema, []byte("99"))
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if db, err := Open(path); err == nil {
		db.Close()
		t.Fatal("Open accepted a file of schema 99")
	}
}

// A corrupt record is reported, not turned into an empty snapshot.
func TestCorruptRecord(t *testing.T) {
	db := openTemp(t)
	err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketContexts).Put([]byte("inv"), []byte("{not json")) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Load(t.Context(), security.Query{APIInvokerID: "inv"}); err == nil {
		t.Error("Load of a corrupt context succeeded")
	}
	if _, err := db.ContextsWithAPI(t.Context(), "api"); err == nil {
		t.Error("ContextsWithAPI over a corrupt context succeeded")
	}
}

// A revoked certificate whose record does not decode survives a reopen and keeps failing the
// requests made with it, never turning into "not revoked".
func TestCorruptRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capif.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRevoked).Put([]byte("key-1"), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Load(t.Context(), security.Query{CallerID: "inv", CertKey: "key-1"}); err == nil {
		t.Error("Load with the corrupt revocation's key succeeded")
	}
}

// Every operation refuses to start once its context is cancelled, and writes nothing.
func TestCancelled(t *testing.T) {
	db := openTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	sc := &security.SecurityContext{APIInvokerID: "inv", Entries: []security.Entry{{Targets: []security.Target{{APIID: "api"}}}}}
	calls := map[string]func() error{
		"Load":            func() error { _, err := db.Load(ctx, security.Query{APIInvokerID: "inv"}); return err },
		"Create":          func() error { return db.Create(ctx, sc) },
		"Replace":         func() error { return db.Replace(ctx, sc, nil) },
		"Delivered":       func() error { return db.Delivered(ctx, "o") },
		"Pending":         func() error { _, err := db.Pending(ctx); return err },
		"ContextsWithAPI": func() error { _, err := db.ContextsWithAPI(ctx, "api"); return err },
		"Update": func() error {
			return db.Update(ctx, func(tx security.RegistryTx) error {
				return tx.PutPrincipal(&security.Principal{ID: "inv", Role: security.RoleInvoker})
			})
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	snap, err := db.Load(t.Context(), security.Query{CallerID: "inv", APIInvokerID: "inv"})
	if err != nil || snap.Caller != nil || snap.Context != nil {
		t.Errorf("cancelled calls wrote something: %+v, %v", snap, err)
	}
}

// Malformed writes are refused before they reach the file.
func TestRejectsMalformedWrites(t *testing.T) {
	db := openTemp(t)
	ctx := t.Context()
	if err := db.Create(ctx, &security.SecurityContext{}); err == nil {
		t.Error("Create without an apiInvokerId succeeded")
	}
	sc := &security.SecurityContext{APIInvokerID: "inv", Entries: []security.Entry{{Targets: []security.Target{{APIID: "api"}}}}}
	if err := db.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	if err := db.Replace(ctx, sc, []security.Owed{{APIInvokerID: "inv"}}); err == nil {
		t.Error("Replace with an owed notification without id succeeded")
	}
	// Reusing an outbox id would overwrite an undelivered notification.
	if err := db.Replace(ctx, sc, []security.Owed{{ID: "o", APIInvokerID: "inv"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Replace(ctx, sc, []security.Owed{{ID: "o", APIInvokerID: "inv", Destination: "x"}}); !errors.Is(err, security.ErrExists) {
		t.Errorf("Replace reusing an outbox id = %v, want ErrExists", err)
	}
	snap, err := db.Load(ctx, security.Query{APIInvokerID: "inv"})
	if err != nil || snap.Context.Version != 2 {
		t.Errorf("refused Replaces changed the context: %+v, %v", snap, err)
	}
}

// A schema-1 file (written before the contextAefs index) is migrated at Open: the index is
// built from its contexts, so an AEF query finds a context that has an entry for it, and the
// file becomes schema 2 (which a schema-1 build refuses).
func TestOpenMigratesSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capif.db")
	sc := security.SecurityContext{APIInvokerID: "inv-1", NotificationDestination: "https://x.example.com", Version: 1,
		Entries: []security.Entry{{AefID: "aef-1", Targets: []security.Target{{AefID: "aef-1", APIID: "api-1", APIName: "a"}}}}}
	raw, _ := json.Marshal(sc)
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPrincipals, bucketAEFs, bucketAPIs, bucketInterfaces, bucketContexts, bucketOutbox, bucketMeta} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketContexts).Put([]byte("inv-1"), raw); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if snap, err := db.Load(ctx, security.Query{APIInvokerID: "inv-1", ForAEF: "aef-1"}); err != nil || snap.Context == nil {
		t.Errorf("AEF query after migration: %+v, %v", snap, err)
	}
	if snap, _ := db.Load(ctx, security.Query{APIInvokerID: "inv-1", ForAEF: "aef-2"}); snap.Context != nil {
		t.Error("the migrated index does not leave out a context without an entry for aef-2")
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchema); string(v) != "2" {
			t.Errorf("schema %q after migration, want 2", v)
		}
		return nil
	})
}
