package storetest

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/security"
)

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
