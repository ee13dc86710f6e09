// Package storetest is the contract suite of security.Store and security.Registry (its Update
// directly, and the registry rules of security.Service run on it). Every back end
// runs it from its own tests:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend {
//			db := openMyBackend(t) // closed by t.Cleanup
//			return storetest.Backend{Store: db, Registry: db, Pending: db.Pending, KeySet: db}
//		})
//	}
//
// The suite knows nothing of any back end. Each subtest calls open once and uses ids of its own
// (unique per run), so open may return a fresh database or one shared table every time. Reads
// are checked right after writes, as the port demands strong consistency (ContextsWithAPI
// included). Benchmark measures Load and Replace the same way.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
)

// Backend is the adapter under test.
type Backend struct {
	Store    security.Store
	Registry security.Registry
	// Pending lists every undelivered outbox record (any order). Optional: without it the suite
	// still exercises Replace with owed notifications and Delivered, but cannot see the outbox,
	// so its atomicity is not verified (the test log says so).
	Pending func(ctx context.Context) ([]security.Owed, error)
	// KeySet is a key set of this open's own (empty when opened).
	KeySet security.KeySet
}

// admin is a Service on the back end alone: the registry rules run through it, as the admin
// command runs them.
func (b Backend) admin() *security.Service {
	return security.New(b.Store, b.Registry, nil, &securitytest.Notifier{}, nil, security.Config{})
}

// Workers is how many goroutines the concurrency subtests run.
const Workers = 50

// Run runs the contract suite against the back ends that open returns.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Load/nothing", testLoadNothing},
		{"Load/every kind", testLoadEveryKind},
		{"Load/returns copies", testLoadCopies},
		{"Create", testCreate},
		{"Create/concurrent", testCreateConcurrent},
		{"Replace/version check", testReplaceVersion},
		{"Replace/missing context", testReplaceMissing},
		{"Replace/no entries deletes", testReplaceDeletes},
		{"Replace/outbox", testOutbox},
		{"Replace/concurrent no lost update", testReplaceConcurrent},
		{"Outbox/delivery state", testOutboxDelivery},
		{"Outbox/claims are exclusive", testOutboxClaimRace},
		{"ContextsWithAPI", testContextsWithAPI},
		{"Registry/update commits all or nothing", testUpdateAtomic},
		{"Registry/update reads its own writes", testUpdateOwnWrites},
		{"Registry/update deletes a context", testUpdateDeleteContext},
		{"Registry/import", testImport},
		{"Registry/records", testRecords},
		{"Registry/re-import upserts", testReimport},
		{"Registry/role clash writes nothing", testRoleClash},
		{"Registry/remove API", testRemoveAPI},
		{"Registry/remove AEF", testRemoveAEF},
		{"Registry/remove invoker", testRemoveInvoker},
		{"Registry/revoked certificate", testRevokedCertificate},
		{"KeySet/round trip", testKeySetRoundTrip},
		{"KeySet/stale version conflicts", testKeySetConflict},
		{"KeySet/concurrent saves", testKeySetConcurrent},
		{"KeySet/beside the registry", testKeySetBesideTheRegistry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // every subtest writes ids of its own
			b := open(t)
			if b.Store == nil || b.Registry == nil || b.KeySet == nil {
				t.Fatal("storetest: Backend needs Store, Registry and KeySet")
			}
			tc.fn(t, b)
		})
	}
}

// --- Load -------------------------------------------------------------------------------------

func testLoadNothing(t *testing.T, b Backend) {
	ctx := t.Context()
	for _, q := range []security.Query{
		{},
		{CallerID: newID("nobody"), APIInvokerID: newID("inv"), AefIDs: []string{newID("aef")}, InterfaceKeys: []string{"fqdn:" + newID("h") + ".example.com|port:443|prefix:/x"},
			Principals: []string{newID("aef")}},
	} {
		snap, err := b.Store.Load(ctx, q)
		if err != nil {
			t.Fatalf("Load(%+v): %v", q, err)
		}
		if snap == nil || snap.Caller != nil || snap.Context != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 || len(snap.Principals) != 0 {
			t.Errorf("Load(%+v) of missing items = %s, want an empty snapshot", q, dump(snap))
		}
	}
}

func testLoadEveryKind(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	sc := f.context()
	mustCreate(t, b, sc)

	missingAEF, missingKey := newID("aef"), security.InterfaceKey(capif.InterfaceDescription{Fqdn: newID("h") + ".example.com"})
	snap, err := b.Store.Load(ctx, security.Query{
		CallerID:      f.inv,
		APIInvokerID:  f.inv,
		AefIDs:        []string{f.aef1, f.aef2, missingAEF},
		InterfaceKeys: []string{f.keyOne(), f.keyShared(), missingKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, f.invokerPrincipal())
	want := f.context()
	want.Version = 1
	equal(t, "Context", snap.Context, want)
	if len(snap.AEFs) != 2 || snap.AEFs[missingAEF] != nil {
		t.Errorf("AEFs has %d catalogues, want those of %s and %s only", len(snap.AEFs), f.aef1, f.aef2)
	}
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], f.catalogue1())
	equal(t, "AEFs[aef2]", snap.AEFs[f.aef2], f.catalogue2())
	if len(snap.Interfaces) != 2 {
		t.Errorf("Interfaces has %d keys, want 2 (the missing key must be absent)", len(snap.Interfaces))
	}
	equal(t, "Interfaces[one]", sortedAPIs(snap.Interfaces[f.keyOne()]), f.indexOne())
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), f.indexShared())

	// An AEF is a caller too, from the same id space.
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef1})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller (AEF)", snap.Caller, &security.Principal{ID: f.aef1, Role: security.RoleAEF})

	// Principals besides the caller (the caller's own id among them too), with their roots.
	root := "https://" + newID("aef") + ".example.com/root"
	mustImport(t, b, security.RegistryDoc{AEFs: []security.AEFRecord{{AefID: f.aef2, AefSecurityRoot: &root}}})
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef1, Principals: []string{f.aef1, f.aef2, missingAEF}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Principals) != 2 {
		t.Errorf("Principals has %d records, want %s and %s only", len(snap.Principals), f.aef1, f.aef2)
	}
	equal(t, "Principals[aef1]", snap.Principals[f.aef1], &security.Principal{ID: f.aef1, Role: security.RoleAEF})
	equal(t, "Principals[aef2]", snap.Principals[f.aef2], &security.Principal{ID: f.aef2, Role: security.RoleAEF, AefSecurityRoot: root})
}

// The domain edits what Load returns before writing it back; that must not reach the store.
func testLoadCopies(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	mustCreate(t, b, f.context())
	q := security.Query{CallerID: f.inv, APIInvokerID: f.inv, AefIDs: []string{f.aef1}, InterfaceKeys: []string{f.keyShared()}}
	snap, err := b.Store.Load(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	snap.Caller.Role = security.RoleAEF
	snap.Caller.SecretHash[0] ^= 0xff
	snap.Context.Entries[0].Targets[0].APIID = "mutated"
	snap.Context.Entries = snap.Context.Entries[:1]
	snap.AEFs[f.aef1].APIs[0].APIName = "mutated"
	snap.Interfaces[f.keyShared()][0].APIID = "mutated"

	again, err := b.Store.Load(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	want := f.context()
	want.Version = 1
	equal(t, "Caller", again.Caller, f.invokerPrincipal())
	equal(t, "Context", again.Context, want)
	equal(t, "AEFs[aef1]", again.AEFs[f.aef1], f.catalogue1())
	equal(t, "Interfaces[shared]", sortedAPIs(again.Interfaces[f.keyShared()]), f.indexShared())
}

// --- Create / Replace -------------------------------------------------------------------------

func testCreate(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	sc := f.context()
	sc.Version = 42 // whatever the caller passes, a new context starts at 1
	if err := b.Store.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	if sc.Version != 1 {
		t.Errorf("after Create sc.Version = %d, want 1", sc.Version)
	}
	other := f.context()
	other.NotificationDestination = "https://other.example.com/cb"
	if err := b.Store.Create(ctx, other); !errors.Is(err, security.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	want := f.context()
	want.Version = 1
	equal(t, "Context after refused Create", loadContext(t, b, f.inv), want)
}

func testCreateConcurrent(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	var created atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, Workers)
	for i := range Workers {
		wg.Go(func() {
			sc := f.context()
			sc.NotificationDestination = fmt.Sprintf("https://inv.example.com/cb/%d", i)
			switch err := b.Store.Create(ctx, sc); {
			case err == nil:
				created.Add(1)
			case !errors.Is(err, security.ErrExists):
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Create: %v", err)
	}
	if n := created.Load(); n != 1 {
		t.Fatalf("%d of %d concurrent Creates succeeded, want exactly 1", n, Workers)
	}
	if got := loadContext(t, b, f.inv); got == nil || got.Version != 1 {
		t.Errorf("stored context = %s, want version 1", dump(got))
	}
}

func testReplaceVersion(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())

	next := f.context()
	next.Version = 1
	next.NotificationDestination = "https://inv.example.com/v2"
	next.Entries = next.Entries[1:]
	if err := b.Store.Replace(ctx, next, nil); err != nil {
		t.Fatalf("Replace at the stored version: %v", err)
	}
	if next.Version != 2 {
		t.Errorf("after Replace sc.Version = %d, want 2", next.Version)
	}
	want := clone(t, next)
	equal(t, "Context after Replace", loadContext(t, b, f.inv), want)

	for _, v := range []int64{0, 1, 3, 99} { // stale, and ahead of the store
		stale := f.context()
		stale.Version = v
		if err := b.Store.Replace(ctx, stale, nil); !errors.Is(err, security.ErrConflict) {
			t.Errorf("Replace at version %d (stored 2) = %v, want ErrConflict", v, err)
		}
	}
	equal(t, "Context after refused Replaces", loadContext(t, b, f.inv), want)
}

func testReplaceMissing(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	sc := f.context()
	sc.Version = 1
	if err := b.Store.Replace(ctx, sc, nil); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("Replace of a context never created = %v, want ErrNotFound", err)
	}
	if got := loadContext(t, b, f.inv); got != nil {
		t.Errorf("Replace of a missing context created %s", dump(got))
	}
	empty := f.context()
	empty.Version, empty.Entries = 1, nil
	if err := b.Store.Replace(ctx, empty, nil); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("deleting Replace of a context never created = %v, want ErrNotFound", err)
	}

	// Deleted under the writer's feet: ErrNotFound, not a resurrection.
	mustCreate(t, b, f.context())
	gone := f.context()
	gone.Version, gone.Entries = 1, nil
	if err := b.Store.Replace(ctx, gone, nil); err != nil {
		t.Fatal(err)
	}
	late := f.context()
	late.Version = 1
	if err := b.Store.Replace(ctx, late, nil); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("Replace of a deleted context = %v, want ErrNotFound", err)
	}
	if got := loadContext(t, b, f.inv); got != nil {
		t.Errorf("Replace of a deleted context brought it back: %s", dump(got))
	}
}

func testReplaceDeletes(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())
	for _, entries := range [][]security.Entry{nil, {}} {
		sc := loadContext(t, b, f.inv)
		sc.Entries = entries
		if err := b.Store.Replace(ctx, sc, nil); err != nil {
			t.Fatalf("Replace with entries %#v: %v", entries, err)
		}
		if got := loadContext(t, b, f.inv); got != nil {
			t.Fatalf("a context without entries is still stored: %s", dump(got))
		}
		if ids, err := b.Store.ContextsWithAPI(ctx, f.api1); err != nil || len(ids) != 0 {
			t.Errorf("ContextsWithAPI after deletion = %v, %v; want none", ids, err)
		}
		// The id is free again: a new context starts over at version 1.
		mustCreate(t, b, f.context())
	}
}

// testReplaceConcurrent: Workers goroutines each add one distinct target by Load → modify →
// Replace, retrying on ErrConflict. Serialisable writes end with every target present exactly
// once at version Workers+1, and the outbox holding exactly the winning attempts' records.
func testReplaceConcurrent(t *testing.T, b Backend) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := newFixture()
	seed := security.Target{AefID: f.aef1, APIID: f.api1, APIName: "name1"}
	mustCreate(t, b, &security.SecurityContext{
		APIInvokerID:            f.inv,
		NotificationDestination: "https://inv.example.com/cb",
		Entries: []security.Entry{{AefID: f.aef1, PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH},
			SelSecurityMethod: capif.OAUTH, Targets: []security.Target{seed}}},
	})

	want := []security.Target{seed}
	won := make([]security.Owed, Workers)
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, Workers)
	for i := range Workers {
		target := security.Target{AefID: f.aef1, APIID: fmt.Sprintf("%s-w%03d", f.api1, i), APIName: fmt.Sprintf("w%03d", i)}
		want = append(want, target)
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("worker %d gave up after %d attempts: %w", i, attempt, ctx.Err())
					return
				}
				snap, err := b.Store.Load(ctx, security.Query{APIInvokerID: f.inv})
				if err != nil || snap.Context == nil {
					errs <- fmt.Errorf("worker %d: Load = %v, %v", i, snap, err)
					return
				}
				sc := snap.Context
				sc.Entries[0].Targets = append(sc.Entries[0].Targets, target)
				o := f.owed(f.aef1, target.APIID) // a fresh id per attempt: losers must leave none
				switch err := b.Store.Replace(ctx, sc, []security.Owed{o}); {
				case err == nil:
					won[i] = o
					return
				case errors.Is(err, security.ErrConflict):
					conflicts.Add(1)
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // jitter breaks lockstep
				default:
					errs <- fmt.Errorf("worker %d: Replace: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Without conflicts the run proved little; the count shows the race was real.
	t.Logf("%d writers, %d conflicts retried", Workers, conflicts.Load())
	got := loadContext(t, b, f.inv)
	if got == nil {
		t.Fatal("the context is gone")
	}
	if got.Version != Workers+1 {
		t.Errorf("version = %d after %d successful Replaces, want %d", got.Version, Workers, Workers+1)
	}
	equal(t, "targets", sortedTargets(got.Entries[0].Targets), sortedTargets(want))
	checkPending(t, b, f.inv, won)
}

// --- ContextsWithAPI --------------------------------------------------------------------------

func testContextsWithAPI(t *testing.T, b Backend) {
	ctx := t.Context()
	apiA, apiB, apiNone, aef := newID("api"), newID("api"), newID("api"), newID("aef")
	entry := func(targets ...security.Target) security.Entry {
		return security.Entry{AefID: aef, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI}, SelSecurityMethod: capif.PKI, Targets: targets}
	}
	tA, tB := security.Target{AefID: aef, APIID: apiA, APIName: "a"}, security.Target{AefID: aef, APIID: apiB, APIName: "b"}
	only := func(id string, entries ...security.Entry) *security.SecurityContext {
		return &security.SecurityContext{APIInvokerID: id, NotificationDestination: "https://inv.example.com/cb", Entries: entries}
	}
	c1, c2, c3 := newID("inv"), newID("inv"), newID("inv")
	mustCreate(t, b, only(c1, entry(tA)))
	mustCreate(t, b, only(c2, entry(tB), entry(tB, tA))) // A only in a second entry's second target
	mustCreate(t, b, only(c3, entry(tB)))

	check := func(apiID string, want ...string) {
		t.Helper()
		got, err := b.Store.ContextsWithAPI(ctx, apiID)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "ContextsWithAPI("+apiID+")", sorted(got), sorted(want))
	}
	check(apiA, c1, c2)
	check(apiB, c2, c3)
	check(apiNone)

	sc := loadContext(t, b, c2)
	sc.Entries = sc.Entries[:1]
	if err := b.Store.Replace(ctx, sc, nil); err != nil {
		t.Fatal(err)
	}
	check(apiA, c1)
	check(apiB, c2, c3)
}
