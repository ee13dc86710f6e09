// Package storetest is the contract suite of security.Store and security.Registry (its Update
// directly, and the registry rules of security.Service run on it). Every back end
// runs it from its own tests:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend {
//			db := openMyBackend(t) // closed by t.Cleanup
//			return storetest.Backend{Store: db, Registry: db, Pending: db.Pending}
//		})
//	}
//
// The suite knows nothing of any back end. Each subtest calls open once and uses ids of its own
// (unique per run), so open may return a fresh database or one shared table every time. Reads
// are checked right after writes, as the port demands strong consistency (ContextsWithAPI
// included). Benchmark measures Load and Replace the same way.
package storetest

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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
}

// mine keeps the records of invoker id.
func mine(all []security.Owed, id string) map[string]security.Owed {
	out := map[string]security.Owed{}
	for _, o := range all {
		if o.APIInvokerID == id {
			out[o.ID] = o
		}
	}
	return out
}

// testOutboxDelivery: due records, claims, attempts, dead letters, redrive and drop, and the
// records written before delivery state existed (zero times: due at once).
func testOutboxDelivery(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())
	now := time.Now().Truncate(time.Millisecond)
	held := f.owed(f.aef1, f.api1)
	held.CreatedAt, held.WindowFrom, held.NextAttempt, held.ClaimedUntil = now, now, now, now.Add(time.Minute)
	old := f.owed(f.aef2, f.api1) // no delivery state
	sc := loadContext(t, b, f.inv)
	sc.Entries = sc.Entries[:1]
	if err := b.Store.Replace(ctx, sc, []security.Owed{held, old}); err != nil {
		t.Fatal(err)
	}
	due := func(at time.Time) []string {
		t.Helper()
		l, err := b.Store.Due(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for id := range mine(l, f.inv) {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	equal(t, "due while one is held", due(now), []string{old.ID})
	until := now.Add(time.Minute)
	if err := b.Store.Claim(ctx, old, now, until); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := b.Store.Claim(ctx, old, now, until); !errors.Is(err, security.ErrConflict) {
		t.Fatalf("second Claim = %v, want ErrConflict", err)
	}
	equal(t, "due while both are held", due(now), []string(nil))

	failed := old
	failed.Attempts, failed.LastError, failed.NextAttempt, failed.CreatedAt, failed.WindowFrom = 1, "destination answered 503", now.Add(10*time.Second), now, now
	if err := b.Store.Attempted(ctx, failed, until.Add(time.Millisecond)); !errors.Is(err, security.ErrConflict) {
		t.Fatalf("Attempted by a worker that does not hold it = %v, want ErrConflict", err)
	}
	if err := b.Store.Attempted(ctx, failed, until); err != nil {
		t.Fatalf("Attempted: %v", err)
	}
	all, err := b.Store.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := mine(all, f.inv)[old.ID]
	if got.Attempts != 1 || got.LastError != failed.LastError || !got.NextAttempt.Equal(failed.NextAttempt) || !got.ClaimedUntil.IsZero() || got.Dead || !got.CreatedAt.Equal(now) {
		t.Errorf("after Attempted: %s", dump(got))
	}
	equal(t, "due before the next attempt", due(now.Add(9*time.Second)), []string(nil))
	equal(t, "due at the next attempt", due(now.Add(10*time.Second)), []string{old.ID})
	if err := b.Store.Claim(ctx, old, now.Add(10*time.Second), now.Add(time.Hour)); !errors.Is(err, security.ErrConflict) {
		t.Errorf("Claim of a record listed before its last attempt = %v, want ErrConflict", err)
	}
	equal(t, "after the held one's claim lapsed", due(now.Add(2*time.Minute)), []string{held.ID, old.ID})

	// Dead-lettered: never due; redrive makes it due now; drop removes it.
	at := now.Add(10 * time.Second)
	if err := b.Store.Claim(ctx, got, at, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dead := got
	dead.Attempts, dead.Dead, dead.LastError = 2, true, "destination answered 410 Gone"
	if err := b.Store.Attempted(ctx, dead, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	equal(t, "due with a dead letter", due(now.Add(time.Hour)), []string{held.ID})
	if err := b.Store.Redrive(ctx, held.ID, now); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("Redrive of a live record = %v, want ErrNotFound", err)
	}
	later := now.Add(time.Hour)
	if err := b.Store.Redrive(ctx, old.ID, later); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	equal(t, "due after redrive", due(later), []string{held.ID, old.ID})
	all, _ = b.Store.Pending(ctx)
	if r := mine(all, f.inv)[old.ID]; r.Dead || !r.WindowFrom.Equal(later) || r.Attempts != 2 {
		t.Errorf("redriven record %s", dump(r))
	}
	for _, id := range []string{old.ID, held.ID} {
		if err := b.Store.Drop(ctx, id); err != nil {
			t.Fatalf("Drop: %v", err)
		}
		if err := b.Store.Drop(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("second Drop = %v, want ErrNotFound", err)
		}
	}
	checkPending(t, b, f.inv, nil)
	if err := b.Store.Redrive(ctx, newID("nothing"), now); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("Redrive of nothing = %v, want ErrNotFound", err)
	}
}

// testOutboxClaimRace: Workers goroutines claim the same due record; exactly one wins.
func testOutboxClaimRace(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())
	o := f.owed(f.aef1, f.api1)
	sc := loadContext(t, b, f.inv)
	sc.Entries = sc.Entries[:1]
	if err := b.Store.Replace(ctx, sc, []security.Owed{o}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var won atomic.Int32
	var wg sync.WaitGroup
	for range Workers {
		wg.Go(func() {
			switch err := b.Store.Claim(ctx, o, now, now.Add(time.Minute)); {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, security.ErrConflict) && !errors.Is(err, security.ErrUnavailable):
				t.Errorf("Claim: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Errorf("%d workers claimed one record, want exactly 1", won.Load())
	}
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
		{"Registry/re-import upserts", testReimport},
		{"Registry/role clash writes nothing", testRoleClash},
		{"Registry/remove API", testRemoveAPI},
		{"Registry/remove AEF", testRemoveAEF},
		{"Registry/remove invoker", testRemoveInvoker},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			if b.Store == nil || b.Registry == nil {
				t.Fatal("storetest: Backend needs both Store and Registry")
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
		{CallerID: newID("nobody"), APIInvokerID: newID("inv"), AefIDs: []string{newID("aef")}, InterfaceKeys: []string{"fqdn:" + newID("h") + ".example.com|port:443|prefix:/x"}},
	} {
		snap, err := b.Store.Load(ctx, q)
		if err != nil {
			t.Fatalf("Load(%+v): %v", q, err)
		}
		if snap == nil || snap.Caller != nil || snap.Context != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
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

func testOutbox(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())
	if b.Pending == nil {
		t.Log("Backend.Pending is nil: outbox contents are not verified")
	}

	// A revocation and its two notifications commit together.
	sc := loadContext(t, b, f.inv)
	sc.Entries = sc.Entries[:1]
	owed := []security.Owed{f.owed(f.aef1, f.api1), f.owed(f.aef2, f.api1)}
	if err := b.Store.Replace(ctx, sc, owed); err != nil {
		t.Fatal(err)
	}
	checkPending(t, b, f.inv, owed)

	// A losing writer leaves no notification behind.
	stale := f.context()
	stale.Version = 1
	lost := f.owed(f.aef1, f.api2)
	if err := b.Store.Replace(ctx, stale, []security.Owed{lost}); !errors.Is(err, security.ErrConflict) {
		t.Fatalf("stale Replace = %v, want ErrConflict", err)
	}
	checkPending(t, b, f.inv, owed)

	if err := b.Store.Delivered(ctx, owed[0].ID); err != nil {
		t.Fatal(err)
	}
	checkPending(t, b, f.inv, owed[1:])
	// Delivery confirmations may repeat (a retried handler) and must not fail.
	for _, id := range []string{owed[0].ID, newID("never-owed")} {
		if err := b.Store.Delivered(ctx, id); err != nil {
			t.Errorf("Delivered(%q) of an absent record = %v, want nil", id, err)
		}
	}
	checkPending(t, b, f.inv, owed[1:])

	// Revoking the last entry deletes the context and still records what it owes.
	last := loadContext(t, b, f.inv)
	last.Entries = nil
	final := f.owed(f.aef1, f.api1)
	if err := b.Store.Replace(ctx, last, []security.Owed{final}); err != nil {
		t.Fatal(err)
	}
	if got := loadContext(t, b, f.inv); got != nil {
		t.Errorf("context still stored: %s", dump(got))
	}
	checkPending(t, b, f.inv, []security.Owed{owed[1], final})
	for _, o := range []security.Owed{owed[1], final} {
		if err := b.Store.Delivered(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
	}
	checkPending(t, b, f.inv, nil)
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

// --- Registry ---------------------------------------------------------------------------------

// records writes one record of each kind straight through tx (not through the registry rules).
func (f *fixture) records(tx security.RegistryTx) error {
	p := f.api1AtAEF1()
	for _, err := range []error{
		tx.PutPrincipal(f.invokerPrincipal()),
		tx.PutAEF(&security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{p}}),
		tx.PutAPI(&f.doc.ServiceAPIs[0]),
		tx.PutInterface(f.keyOne(), []security.PublishedAPI{p}),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// everything is the query that loads what records wrote.
func (f *fixture) everything() security.Query {
	return security.Query{CallerID: f.inv, AefIDs: []string{f.aef1}, InterfaceKeys: []string{f.keyOne()}}
}

func testUpdateAtomic(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	failed := errors.New("the rule refused")
	err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := f.records(tx); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	snap, err := b.Store.Load(ctx, f.everything())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Caller != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
		t.Errorf("a failed Update wrote %s", dump(snap))
	}

	if err := b.Registry.Update(ctx, f.records); err != nil {
		t.Fatal(err)
	}
	snap, err = b.Store.Load(ctx, f.everything())
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, f.invokerPrincipal())
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{f.api1AtAEF1()}})
	equal(t, "Interfaces[one]", snap.Interfaces[f.keyOne()], []security.PublishedAPI{f.api1AtAEF1()})
}

func testUpdateOwnWrites(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	if err := b.Registry.Update(ctx, f.records); err != nil {
		t.Fatal(err)
	}
	keys := []security.RecordKey{{Kind: security.RecordPrincipal, ID: f.inv}, {Kind: security.RecordPrincipal, ID: f.aef2},
		{Kind: security.RecordAEF, ID: f.aef1}, {Kind: security.RecordAPI, ID: f.api1}, {Kind: security.RecordInterface, ID: f.keyOne()},
		{Kind: security.RecordInterface, ID: f.keyShared()}}
	err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.Prefetch(keys); err != nil {
			return err
		}
		// As stored: present ones found, absent ones ErrNotFound.
		if p, err := tx.GetPrincipal(f.inv); err != nil || !reflect.DeepEqual(p, f.invokerPrincipal()) {
			t.Errorf("GetPrincipal = %s, %v", dump(p), err)
		}
		if d, err := tx.GetAPI(f.api1); err != nil || d.APIID != f.api1 {
			t.Errorf("GetAPI = %s, %v", dump(d), err)
		}
		if _, err := tx.GetPrincipal(f.aef2); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetPrincipal of an absent id = %v, want ErrNotFound", err)
		}
		if _, err := tx.GetAEF(f.aef2); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetAEF of an absent catalogue = %v, want ErrNotFound", err)
		}
		if _, err := tx.GetAPI(f.api2); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetAPI of an absent API = %v, want ErrNotFound", err)
		}
		if _, err := tx.GetInterface(f.keyShared()); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetInterface of an absent entry = %v, want ErrNotFound", err)
		}
		// Own writes, deletions included (an empty catalogue or index entry is a deletion).
		aef2 := &security.Principal{ID: f.aef2, Role: security.RoleAEF}
		for _, err := range []error{tx.PutPrincipal(aef2), tx.DeletePrincipal(f.inv), tx.PutAEF(&security.AEF{AefID: f.aef1}),
			tx.PutInterface(f.keyOne(), nil), tx.DeleteAPI(f.api1)} {
			if err != nil {
				return err
			}
		}
		if p, err := tx.GetPrincipal(f.aef2); err != nil || !reflect.DeepEqual(p, aef2) {
			t.Errorf("GetPrincipal after PutPrincipal = %s, %v", dump(p), err)
		}
		for what, err := range map[string]error{
			"GetPrincipal after DeletePrincipal": second(tx.GetPrincipal(f.inv)),
			"GetAEF after an empty PutAEF":       second(tx.GetAEF(f.aef1)),
			"GetInterface after an empty Put":    second(tx.GetInterface(f.keyOne())),
			"GetAPI after DeleteAPI":             second(tx.GetAPI(f.api1)),
		} {
			if !errors.Is(err, security.ErrNotFound) {
				t.Errorf("%s = %v, want ErrNotFound", what, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, AefIDs: []string{f.aef1}, InterfaceKeys: []string{f.keyOne()}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Caller != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
		t.Errorf("deleted records still load: %s", dump(snap))
	}
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef2})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller aef2", snap.Caller, &security.Principal{ID: f.aef2, Role: security.RoleAEF})
}

func second[T any](_ T, err error) error { return err }

func testUpdateDeleteContext(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())
	other := newFixture()
	mustCreate(t, b, other.context())
	absent := newID("inv")
	err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.DeleteContext(absent, nil); err != nil { // nothing to delete is no error
			return err
		}
		return tx.DeleteContext(f.inv, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if sc := loadContext(t, b, f.inv); sc != nil {
		t.Errorf("the context survived DeleteContext: %s", dump(sc))
	}
	if sc := loadContext(t, b, other.inv); sc == nil {
		t.Error("DeleteContext deleted another invoker's context")
	}
	// A failed change deletes nothing.
	failed := errors.New("the rule refused")
	err = b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.DeleteContext(other.inv, nil); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if sc := loadContext(t, b, other.inv); sc == nil {
		t.Error("a failed Update deleted a context")
	}
}

func testImport(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	// Importing the same document again changes nothing.
	mustImport(t, b, f.doc)
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, AefIDs: []string{f.aef1, f.aef2}, InterfaceKeys: []string{f.keyOne(), f.keyShared()}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, f.invokerPrincipal())
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], f.catalogue1())
	equal(t, "AEFs[aef2]", snap.AEFs[f.aef2], f.catalogue2())
	equal(t, "Interfaces[one]", sortedAPIs(snap.Interfaces[f.keyOne()]), f.indexOne())
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), f.indexShared())
}

// testReimport: importing an API again replaces its profiles everywhere: catalogues of AEFs it
// left lose it, interfaces it left lose it (and vanish when nothing else is served there), other
// APIs on the same interface stay. Records not in the new document are kept (upsert).
func testReimport(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)

	port := 8443
	moved := capif.InterfaceDescription{Fqdn: f.host, Port: &port, APIPrefix: "/moved"}
	api1 := capif.ServiceAPIDescription{APIName: "renamed1", APIID: f.api1, AefProfiles: []capif.AefProfile{
		{AefID: f.aef1, SecurityMethods: []capif.SecurityMethod{capif.PKI}, InterfaceDescriptions: []capif.InterfaceDescription{moved}},
	}}
	doc := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: f.inv, NotificationDestination: "https://inv.example.com/new", OnboardingSecret: "rotated"}},
		AEFs:        []security.AEFRecord{{AefID: f.aef1}},
		ServiceAPIs: []capif.ServiceAPIDescription{api1},
	}
	mustImport(t, b, doc)

	keyMoved := security.InterfaceKey(moved)
	snap, err := b.Store.Load(ctx, security.Query{
		CallerID: f.inv, AefIDs: []string{f.aef1, f.aef2},
		InterfaceKeys: []string{f.keyOne(), f.keyShared(), keyMoved},
	})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, &security.Principal{ID: f.inv, Role: security.RoleInvoker,
		SecretHash: security.HashSecret("rotated"), NotificationDestination: "https://inv.example.com/new"})
	newAPI1 := security.PublishedAPI{AefID: f.aef1, APIID: f.api1, APIName: "renamed1",
		SecurityMethods: []capif.SecurityMethod{capif.PKI}, Interfaces: []capif.InterfaceDescription{moved}}
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{newAPI1, f.api2AtAEF1()}})
	if a := snap.AEFs[f.aef2]; a != nil && len(a.APIs) > 0 {
		t.Errorf("AEF %s no longer in api1's profiles still lists %s", f.aef2, dump(a.APIs))
	}
	if l, ok := snap.Interfaces[f.keyOne()]; ok {
		t.Errorf("interface only api1 used is still indexed: %s", dump(l))
	}
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), []security.PublishedAPI{f.api2AtShared()})
	equal(t, "Interfaces[moved]", sortedAPIs(snap.Interfaces[keyMoved]), []security.PublishedAPI{newAPI1})

	// aef2 is no longer in any document but stays registered: import never deletes.
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef2})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller aef2", snap.Caller, &security.Principal{ID: f.aef2, Role: security.RoleAEF})
}

func testRoleClash(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)

	// An existing invoker id listed as an AEF, after records that would otherwise be written
	// (invokers are applied first) and with an API published by it.
	newInv := newID("inv")
	port := 443
	ifc := capif.InterfaceDescription{Fqdn: newID("h") + ".example.com", Port: &port}
	clashAPI := newID("api")
	asAEF := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: newInv}},
		AEFs:        []security.AEFRecord{{AefID: f.inv}, {AefID: f.aef1}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIName: "clash", APIID: clashAPI, AefProfiles: []capif.AefProfile{{AefID: f.inv, InterfaceDescriptions: []capif.InterfaceDescription{ifc}}}},
		},
	}
	// The reverse: an existing AEF id listed as an invoker.
	asInvoker := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: newInv}, {APIInvokerID: f.aef2}},
	}
	for name, doc := range map[string]security.RegistryDoc{"invoker as AEF": asAEF, "AEF as invoker": asInvoker} {
		if err := b.admin().ImportRegistry(ctx, doc); !errors.Is(err, security.ErrRoleClash) {
			t.Fatalf("%s: Import = %v, want ErrRoleClash", name, err)
		}
		snap, err := b.Store.Load(ctx, security.Query{CallerID: newInv, AefIDs: []string{f.inv}, InterfaceKeys: []string{security.InterfaceKey(ifc)}})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Caller != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
			t.Errorf("%s: a refused import wrote %s", name, dump(snap))
		}
		for id, want := range map[string]*security.Principal{f.inv: f.invokerPrincipal(), f.aef2: {ID: f.aef2, Role: security.RoleAEF}} {
			snap, err := b.Store.Load(ctx, security.Query{CallerID: id})
			if err != nil {
				t.Fatal(err)
			}
			equal(t, name+": Caller "+id, snap.Caller, want)
		}
	}
}

func testRemoveAPI(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	if _, err := b.admin().RemoveAPI(ctx, f.api1); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{AefIDs: []string{f.aef1, f.aef2}, InterfaceKeys: []string{f.keyOne(), f.keyShared()}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{f.api2AtAEF1()}})
	if a := snap.AEFs[f.aef2]; a != nil && len(a.APIs) > 0 {
		t.Errorf("AEFs[aef2] still lists %s", dump(a.APIs))
	}
	if l, ok := snap.Interfaces[f.keyOne()]; ok {
		t.Errorf("Interfaces[one] still indexed: %s", dump(l))
	}
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), []security.PublishedAPI{f.api2AtShared()})

	for _, id := range []string{f.api1, newID("api")} {
		if _, err := b.admin().RemoveAPI(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveAPI(%s) of an absent API = %v, want ErrNotFound", id, err)
		}
	}
	// The API can be published again after removal.
	mustImport(t, b, f.doc)
	snap, err = b.Store.Load(ctx, security.Query{AefIDs: []string{f.aef1}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "AEFs[aef1] after re-publishing", snap.AEFs[f.aef1], f.catalogue1())
}

func testRemoveAEF(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	callerOf := func(id string) *security.Principal {
		t.Helper()
		snap, err := b.Store.Load(ctx, security.Query{CallerID: id})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Caller
	}

	// aef2 still publishes api1: refused, nothing changed.
	if err := b.admin().RemoveAEF(ctx, f.aef2); !errors.Is(err, security.ErrExists) {
		t.Fatalf("RemoveAEF of a publishing AEF = %v, want ErrExists", err)
	}
	equal(t, "Caller aef2", callerOf(f.aef2), &security.Principal{ID: f.aef2, Role: security.RoleAEF})

	if _, err := b.admin().RemoveAPI(ctx, f.api1); err != nil {
		t.Fatal(err)
	}
	if err := b.admin().RemoveAEF(ctx, f.aef2); err != nil {
		t.Fatalf("RemoveAEF of an AEF publishing nothing: %v", err)
	}
	if p := callerOf(f.aef2); p != nil {
		t.Errorf("removed AEF still loads as %s", dump(p))
	}
	for _, id := range []string{f.aef2, newID("aef"), f.inv} { // removed, unknown, the other role
		if err := b.admin().RemoveAEF(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveAEF(%s) = %v, want ErrNotFound", id, err)
		}
	}
	equal(t, "Caller inv", callerOf(f.inv), f.invokerPrincipal())
	equal(t, "Caller aef1", callerOf(f.aef1), &security.Principal{ID: f.aef1, Role: security.RoleAEF})
}

func testRemoveInvoker(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	mustCreate(t, b, f.context())

	if err := b.admin().RemoveInvoker(ctx, f.aef1); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("RemoveInvoker of an AEF = %v, want ErrNotFound", err)
	}
	if err := b.admin().RemoveInvoker(ctx, f.inv); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, APIInvokerID: f.inv})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Caller != nil || snap.Context != nil {
		t.Errorf("after RemoveInvoker Load = %s, want neither record nor context", dump(snap))
	}
	for _, id := range []string{f.inv, newID("inv")} {
		if err := b.admin().RemoveInvoker(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveInvoker(%s) = %v, want ErrNotFound", id, err)
		}
	}
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef1, AefIDs: []string{f.aef1}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller aef1", snap.Caller, &security.Principal{ID: f.aef1, Role: security.RoleAEF})
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], f.catalogue1())
}

// --- fixture ----------------------------------------------------------------------------------

// runToken keeps ids of different runs apart in a shared table.
var runToken = func() string {
	var b [4]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}()

var idSeq atomic.Int64

// newID returns an id unique to this run; zero-padded so string order is creation order. It
// is also a valid FQDN label and free of the scope separators.
func newID(kind string) string {
	return fmt.Sprintf("%s-%s-%06d", kind, runToken, idSeq.Add(1))
}

// fixture is a registry of one invoker, two AEFs and two APIs:
//
//	api1 at aef1 on interface "one"    (profile methods PSK, OAUTH)
//	api1 at aef2 on interface "shared" (interface method PKI)
//	api2 at aef1 on interface "shared" (profile method OAUTH)
type fixture struct {
	inv, aef1, aef2, api1, api2 string
	host                        string
	one, shared, sharedPKI      capif.InterfaceDescription
	doc                         security.RegistryDoc
}

func newFixture() *fixture {
	port := 443
	f := &fixture{inv: newID("inv"), aef1: newID("aef"), aef2: newID("aef"), api1: newID("api"), api2: newID("api"), host: newID("h") + ".example.com"}
	f.one = capif.InterfaceDescription{Fqdn: f.host, Port: &port, APIPrefix: "/one"}
	f.shared = capif.InterfaceDescription{Fqdn: f.host, Port: &port, APIPrefix: "/shared"}
	f.sharedPKI = f.shared
	f.sharedPKI.SecurityMethods = []capif.SecurityMethod{capif.PKI}
	f.doc = security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: f.inv, NotificationDestination: "https://inv.example.com/cb",
			APIInvokerInformation: "contract test invoker", OnboardingSecret: "secret-" + f.inv}},
		AEFs: []security.AEFRecord{{AefID: f.aef1}, {AefID: f.aef2}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIName: "name1", APIID: f.api1, AefProfiles: []capif.AefProfile{
				{AefID: f.aef1, SecurityMethods: []capif.SecurityMethod{capif.PSK, capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{f.one}},
				{AefID: f.aef2, InterfaceDescriptions: []capif.InterfaceDescription{f.sharedPKI}},
			}},
			{APIName: "name2", APIID: f.api2, AefProfiles: []capif.AefProfile{
				{AefID: f.aef1, SecurityMethods: []capif.SecurityMethod{capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{f.shared}},
			}},
		},
	}
	return f
}

func (f *fixture) keyOne() string    { return security.InterfaceKey(f.one) }
func (f *fixture) keyShared() string { return security.InterfaceKey(f.shared) }

func (f *fixture) invokerPrincipal() *security.Principal {
	return &security.Principal{ID: f.inv, Role: security.RoleInvoker, SecretHash: security.HashSecret("secret-" + f.inv),
		NotificationDestination: "https://inv.example.com/cb", APIInvokerInformation: "contract test invoker"}
}

func (f *fixture) api1AtAEF1() security.PublishedAPI {
	return security.PublishedAPI{AefID: f.aef1, APIID: f.api1, APIName: "name1",
		SecurityMethods: []capif.SecurityMethod{capif.PSK, capif.OAUTH}, Interfaces: []capif.InterfaceDescription{f.one}}
}

func (f *fixture) api1AtAEF2() security.PublishedAPI {
	return security.PublishedAPI{AefID: f.aef2, APIID: f.api1, APIName: "name1", Interfaces: []capif.InterfaceDescription{f.sharedPKI}}
}

func (f *fixture) api2AtAEF1() security.PublishedAPI {
	return security.PublishedAPI{AefID: f.aef1, APIID: f.api2, APIName: "name2",
		SecurityMethods: []capif.SecurityMethod{capif.OAUTH}, Interfaces: []capif.InterfaceDescription{f.shared}}
}

// api2AtShared is api2's index entry: narrowed to the one interface (it has only that one).
func (f *fixture) api2AtShared() security.PublishedAPI { return f.api2AtAEF1() }

// catalogue1 is ordered by apiId, as the domain keeps it.
func (f *fixture) catalogue1() *security.AEF {
	return &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{f.api1AtAEF1(), f.api2AtAEF1()}}
}

func (f *fixture) catalogue2() *security.AEF {
	return &security.AEF{AefID: f.aef2, APIs: []security.PublishedAPI{f.api1AtAEF2()}}
}

func (f *fixture) indexOne() []security.PublishedAPI { return []security.PublishedAPI{f.api1AtAEF1()} }

func (f *fixture) indexShared() []security.PublishedAPI {
	return sortedAPIs([]security.PublishedAPI{f.api1AtAEF2(), f.api2AtShared()})
}

// context is a security context with one entry of each kind, every field set.
func (f *fixture) context() *security.SecurityContext {
	shared := f.shared
	return &security.SecurityContext{
		APIInvokerID:            f.inv,
		NotificationDestination: "https://inv.example.com/cb",
		SupportedFeatures:       "2",
		Entries: []security.Entry{
			{AefID: f.aef1, APIID: f.api1, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI, capif.PSK}, SelSecurityMethod: capif.PSK,
				AuthorizationInfo: "authz", PSK: "psk-" + f.inv, Targets: []security.Target{{AefID: f.aef1, APIID: f.api1, APIName: "name1"}}},
			{InterfaceDetails: &shared, PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH, capif.PKI}, SelSecurityMethod: capif.OAUTH,
				AuthenticationInfo: "authn", Targets: []security.Target{
					{AefID: f.aef2, APIID: f.api1, APIName: "name1"}, {AefID: f.aef1, APIID: f.api2, APIName: "name2"}}},
		},
	}
}

func (f *fixture) owed(aefID, apiID string) security.Owed {
	return security.Owed{ID: newID("owed"), APIInvokerID: f.inv, Destination: "https://inv.example.com/cb",
		Notification: capif.SecurityNotification{APIInvokerID: f.inv, AefID: aefID, APIIDs: []string{apiID}, Cause: capif.UnexpectedReason}}
}

// --- helpers ----------------------------------------------------------------------------------

func mustImport(t *testing.T, b Backend, doc security.RegistryDoc) {
	t.Helper()
	if err := doc.Validate(); err != nil {
		t.Fatalf("storetest fixture: %v", err)
	}
	if err := b.admin().ImportRegistry(t.Context(), doc); err != nil {
		t.Fatalf("Import: %v", err)
	}
}

func mustCreate(t *testing.T, b Backend, sc *security.SecurityContext) {
	t.Helper()
	if err := b.Store.Create(t.Context(), sc); err != nil {
		t.Fatalf("Create(%s): %v", sc.APIInvokerID, err)
	}
}

func loadContext(t *testing.T, b Backend, id string) *security.SecurityContext {
	t.Helper()
	snap, err := b.Store.Load(t.Context(), security.Query{APIInvokerID: id})
	if err != nil {
		t.Fatalf("Load(%s): %v", id, err)
	}
	return snap.Context
}

// checkPending compares the outbox records of invoker id (others may share the table) with want.
func checkPending(t *testing.T, b Backend, id string, want []security.Owed) {
	t.Helper()
	pending := b.Pending
	if pending == nil {
		pending = b.Store.Pending
	}
	all, err := pending(t.Context())
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	var got []security.Owed
	for _, o := range all {
		if o.APIInvokerID == id {
			got = append(got, o)
		}
	}
	byID := func(l []security.Owed) []security.Owed {
		l = slices.Clone(l)
		slices.SortFunc(l, func(a, b security.Owed) int { return cmp.Compare(a.ID, b.ID) })
		return l
	}
	equal(t, "outbox", byID(got), byID(want))
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, dump(got), dump(want))
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func clone[T any](t *testing.T, v T) T {
	t.Helper()
	var out T
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sorted(l []string) []string {
	l = slices.Clone(l)
	slices.Sort(l)
	if l == nil {
		l = []string{}
	}
	return l
}

func sortedAPIs(l []security.PublishedAPI) []security.PublishedAPI {
	l = slices.Clone(l)
	slices.SortFunc(l, func(a, b security.PublishedAPI) int {
		if c := cmp.Compare(a.AefID, b.AefID); c != 0 {
			return c
		}
		return cmp.Compare(a.APIID, b.APIID)
	})
	return l
}

func sortedTargets(l []security.Target) []security.Target {
	l = slices.Clone(l)
	slices.SortFunc(l, func(a, b security.Target) int {
		if c := cmp.Compare(a.AefID, b.AefID); c != 0 {
			return c
		}
		return cmp.Compare(a.APIID, b.APIID)
	})
	return l
}
