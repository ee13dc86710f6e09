package security_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
)

// flaky fails the first failures attempts (with err, default a 503-like error), then accepts.
type flaky struct {
	mu       sync.Mutex
	failures int
	err      error
	seen     []security.Delivery
	delay    time.Duration
}

func (f *flaky) Notify(ctx context.Context, d security.Delivery) error {
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, d)
	if len(f.seen) <= f.failures {
		if f.err != nil {
			return f.err
		}
		return errors.New("destination answered 503 Service Unavailable")
	}
	return nil
}

func (f *flaky) attempts() []security.Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]security.Delivery(nil), f.seen...)
}

// deliveryEnv: inv1's standard context, a revocation owed to it, with n the notifier.
func deliveryEnv(t *testing.T, n security.Notifier, configure ...func(*security.Config)) (*env, *security.Service) {
	e := newEnv(t, configure...)
	e.create("inv1", standardRequest())
	svc := security.New(e.db, e.db, e.signer, n, e.clock, e.cfg)
	if err := svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	return e, svc
}

// A destination that fails the first attempts, then accepts: the worker retries with backoff
// until one attempt is answered 2xx, then no attempt follows; every attempt carries one id.
func TestDeliveryRetriesUntilAccepted(t *testing.T) {
	t.Parallel()
	n := &flaky{failures: 3}
	e, svc := deliveryEnv(t, n)
	if got := len(n.attempts()); got != 1 {
		t.Fatalf("%d inline attempts, want 1", got)
	}
	p := e.pending()
	if len(p) != 1 || p[0].Attempts != 1 || p[0].Dead || !p[0].ClaimedUntil.IsZero() || !p[0].NextAttempt.After(e.clock.Now()) {
		t.Fatalf("after a failed inline attempt: %s", dump(p))
	}
	// Not due yet: nothing happens.
	if rep, err := svc.DeliverDue(ctx); err != nil || rep.Claimed != 0 {
		t.Fatalf("DeliverDue before the retry time: %+v, %v", rep, err)
	}
	for i := 0; i < 10 && len(e.pending()) > 0; i++ {
		e.clock.Advance(security.DefaultRetryCap)
		if _, err := svc.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen := n.attempts()
	if len(seen) != 4 || len(e.pending()) != 0 {
		t.Fatalf("%d attempts, outbox %s; want 4 and empty", len(seen), dump(e.pending()))
	}
	for _, d := range seen {
		if d.ID != seen[0].ID || d.ID == "" {
			t.Errorf("attempt ids %q and %q differ", d.ID, seen[0].ID)
		}
	}
	e.clock.Advance(security.DefaultRetryWindow)
	if rep, _ := svc.DeliverDue(ctx); rep.Claimed != 0 || len(n.attempts()) != 4 {
		t.Errorf("an attempt after the accepted one: %+v", rep)
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"msg":"notification delivered"`) || !strings.Contains(logs, seen[0].ID) {
		t.Errorf("delivery not logged with its id: %s", logs)
	}
}

// Backoff grows exponentially with full jitter up to the cap.
func TestDeliveryBackoff(t *testing.T) {
	t.Parallel()
	n := &flaky{failures: 1 << 30}
	e, svc := deliveryEnv(t, n, func(c *security.Config) { c.RetryWindow = 1000 * time.Hour })
	for i := 2; i <= 12; i++ {
		o := e.pending()[0]
		wait := o.NextAttempt.Sub(e.clock.Now())
		ceiling := min(security.DefaultRetryCap, security.DefaultRetryBase<<(i-2))
		if wait <= 0 || wait > ceiling+time.Millisecond {
			t.Errorf("attempt %d: waits %s, want (0, %s]", i, wait, ceiling)
		}
		e.clock.Advance(wait)
		if _, err := svc.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.pending()[0].Attempts; got != 12 {
		t.Errorf("%d attempts recorded, want 12", got)
	}
}

// A destination that can never accept (the SSRF guard refuses it, 410 Gone) is dead-lettered at
// once; a destination that keeps failing is dead-lettered when the window ends. An operator can
// redrive a dead record, which is then delivered.
func TestDeliveryDeadLetters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		wait int // DeliverDue rounds to dead
	}{
		{"undeliverable", fmt.Errorf("destination answered 410 Gone: %w", security.ErrUndeliverable), 0},
		{"window exhausted", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &flaky{failures: 1 << 30, err: tc.err}
			e, svc := deliveryEnv(t, n, func(c *security.Config) { c.RetryWindow = 2 * time.Hour })
			for i := 0; i < 100 && !e.pending()[0].Dead; i++ {
				e.clock.Advance(security.DefaultRetryCap)
				if _, err := svc.DeliverDue(ctx); err != nil {
					t.Fatal(err)
				}
			}
			o := e.pending()[0]
			if !o.Dead {
				t.Fatalf("never dead-lettered: %s", dump(o))
			}
			if tc.wait == 0 && o.Attempts != 1 {
				t.Errorf("undeliverable after %d attempts, want 1", o.Attempts)
			}
			if tc.wait < 0 && (o.Attempts < 3 || !strings.Contains(o.LastError, "retry window")) {
				t.Errorf("dead after %d attempts: %q", o.Attempts, o.LastError)
			}
			before := len(n.attempts())
			e.clock.Advance(security.DefaultRetryWindow)
			if rep, _ := svc.DeliverDue(ctx); rep.Claimed != 0 || len(n.attempts()) != before {
				t.Fatalf("a dead record was attempted: %+v", rep)
			}
			if !strings.Contains(e.logs.String(), "notification dead-lettered") {
				t.Error("dead-lettering not logged")
			}
			// Redrive: due now, delivered once the destination accepts.
			n.mu.Lock()
			n.failures = 0
			n.mu.Unlock()
			if err := svc.Redrive(ctx, o.ID); err != nil {
				t.Fatal(err)
			}
			if err := svc.Redrive(ctx, o.ID); !errors.Is(err, security.ErrNotFound) {
				t.Errorf("redrive of a live record: %v, want ErrNotFound", err)
			}
			if rep, err := svc.DeliverDue(ctx); err != nil || rep.Delivered != 1 || len(e.pending()) != 0 {
				t.Errorf("after redrive: %+v, %v, outbox %s", rep, err, dump(e.pending()))
			}
		})
	}
}

// Records from before delivery state was kept (no attempts, no times) are due at once.
func TestDeliveryOfOldShapeRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	sc := e.stored("inv1")
	sc.Entries = sc.Entries[:1]
	old := security.Owed{ID: "old-1", APIInvokerID: "inv1", Destination: destInv1,
		Notification: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: capif.UnexpectedReason}}
	if err := e.db.Replace(ctx, sc, []security.Owed{old}); err != nil {
		t.Fatal(err)
	}
	n := &flaky{}
	svc := security.New(e.db, e.db, e.signer, n, e.clock, e.cfg)
	rep, err := svc.DeliverDue(ctx)
	if err != nil || rep.Delivered != 1 || len(n.attempts()) != 1 || n.attempts()[0].ID != "old-1" || len(e.pending()) != 0 {
		t.Errorf("old-shape record: %+v, %v, attempts %v", rep, err, n.attempts())
	}
}

// Two workers over one outbox make each attempt once: a claim is conditional.
func TestTwoWorkersDeliverOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := &flaky{delay: 5 * time.Millisecond}
	for i := range 20 {
		id := fmt.Sprintf("inv-%d", i)
		if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: id}}}); err != nil {
			t.Fatal(err)
		}
		e.create(id, standardRequest())
		sc := e.stored(id)
		sc.Entries = sc.Entries[:1]
		o := security.Owed{ID: "owed-" + id, APIInvokerID: id, Destination: destInv1, Notification: capif.SecurityNotification{APIInvokerID: id, Cause: capif.UnexpectedReason}}
		if err := e.db.Replace(ctx, sc, []security.Owed{o}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	reps := make([]security.DeliveryReport, 2)
	for w := range 2 {
		svc := security.New(e.db, e.db, e.signer, n, e.clock, e.cfg)
		wg.Go(func() {
			rep, err := svc.DeliverDue(ctx)
			if err != nil {
				t.Error(err)
			}
			reps[w] = rep
		})
	}
	wg.Wait()
	count := map[string]int{}
	for _, d := range n.attempts() {
		count[d.ID]++
	}
	for id, c := range count {
		if c != 1 {
			t.Errorf("%s attempted %d times", id, c)
		}
	}
	if len(count) != 20 || reps[0].Delivered+reps[1].Delivered != 20 || len(e.pending()) != 0 {
		t.Errorf("%d delivered (%+v), outbox %d", len(count), reps, len(e.pending()))
	}
}

// An inline attempt that outlives its claim (a crash between commit and delivery) is taken over
// by the worker once the claim lapses.
func TestDeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	// A revocation committed, its inline attempt never made (the process died): the record is
	// held by the dead process until its claim lapses.
	sc := e.stored("inv1")
	sc.Entries = sc.Entries[:1]
	now := e.clock.Now()
	o := security.Owed{ID: "crashed", APIInvokerID: "inv1", Destination: destInv1, CreatedAt: now, WindowFrom: now, NextAttempt: now,
		ClaimedUntil: now.Add(security.DefaultClaimLease), Notification: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: capif.UnexpectedReason}}
	if err := e.db.Replace(ctx, sc, []security.Owed{o}); err != nil {
		t.Fatal(err)
	}
	n := &flaky{}
	svc := security.New(e.db, e.db, e.signer, n, e.clock, e.cfg)
	if rep, _ := svc.DeliverDue(ctx); rep.Claimed != 0 {
		t.Fatalf("a held record was claimed: %+v", rep)
	}
	e.clock.Advance(security.DefaultClaimLease)
	if rep, _ := svc.DeliverDue(ctx); rep.Delivered != 1 || len(n.attempts()) != 1 {
		t.Fatalf("after the claim lapsed: %+v", rep)
	}
}

// An admin removal revoking an API from many contexts delivers concurrently: one destination
// that never answers does not hold up the others.
func TestRemoveAPIDeliversConcurrently(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) { // 200 ms deliveries in the bubble's time
		n := &flaky{delay: 200 * time.Millisecond}
		e := newEnv(t)
		svc := security.New(e.db, e.db, e.signer, n, e.clock, e.cfg)
		for i := range 16 {
			id := fmt.Sprintf("inv-%d", i)
			if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: id}}}); err != nil {
				t.Fatal(err)
			}
			e.create(id, standardRequest())
		}
		start := time.Now()
		revoked, err := svc.RemoveAPI(ctx, "apiC")
		if err != nil || revoked != 16 {
			t.Fatal(revoked, err)
		}
		if d := time.Since(start); d != 200*time.Millisecond { // one after another: 3.2 s
			t.Errorf("16 deliveries of 200 ms took %s: not concurrent", d)
		}
		if len(n.attempts()) != 16 || len(e.pending()) != 0 {
			t.Errorf("%d attempts, outbox %d", len(n.attempts()), len(e.pending()))
		}
	})
}

// A destination failing for days with the default policy: the doubling stops at the cap, so no
// attempt count overflows the backoff (it once panicked at attempt 30), and the record ends
// dead-lettered when the window closes.
func TestDeliveryBackoffNeverOverflows(t *testing.T) {
	t.Parallel()
	n := &flaky{failures: 1 << 30}
	e, svc := deliveryEnv(t, n)
	for i := 0; i < 200 && !e.pending()[0].Dead; i++ {
		e.clock.Advance(security.DefaultRetryCap)
		if _, err := svc.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	o := e.pending()[0]
	if !o.Dead || o.Attempts < 45 {
		t.Errorf("after a 24 h window: dead %v after %d attempts", o.Dead, o.Attempts)
	}
}

// An inline attempt whose claim is about to lapse is left to the worker: the two never make
// the same attempt at once.
func TestInlineAttemptNeedsItsClaim(t *testing.T) {
	t.Parallel()
	n := &flaky{}
	e := newEnv(t)
	e.create("inv1", standardRequest())
	// The clock jumps past most of the lease between the commit and the inline attempt.
	svc := security.New(&lapsingStore{Store: e.db, clock: e.clock}, e.db, e.signer, n, e.clock, e.cfg)
	if err := svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	if got := len(n.attempts()); got != 0 {
		t.Fatalf("%d inline attempts with a nearly lapsed claim, want 0", got)
	}
	e.clock.Advance(security.DefaultClaimLease)
	if rep, err := svc.DeliverDue(ctx); err != nil || rep.Delivered != 1 {
		t.Errorf("the worker after the claim lapsed: %+v, %v", rep, err)
	}
}

// lapsingStore advances the clock by most of a claim lease when a change commits.
type lapsingStore struct {
	security.Store
	clock *securitytest.Clock
}

func (l *lapsingStore) Replace(ctx context.Context, sc *security.SecurityContext, owed []security.Owed) error {
	err := l.Store.Replace(ctx, sc, owed)
	l.clock.Advance(security.DefaultClaimLease - time.Second)
	return err
}

// A delivery run attempts the longest due first (ties by id), whatever order the store lists
// them in, and more records than one batch all get their attempt.
func TestDeliveryOrderLongestDueFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *security.Config) { c.DeliveryConcurrency = 1 })
	e.create("inv1", standardRequest())
	sc := e.stored("inv1")
	sc.Entries = sc.Entries[:1]
	now := e.clock.Now()
	var owed []security.Owed
	var want []string
	const n = 250 // more than a batch
	for i := range n {
		// Ids that sort against their due times: the order must come from NextAttempt.
		id := fmt.Sprintf("n%03d", n-i)
		due := now.Add(-time.Duration(n-i) * time.Second)
		if i == n-1 {
			id, due = "a-tie", owed[n-2].NextAttempt // same time as the one before: the id breaks the tie
			want = append(want[:len(want)-1], id, want[len(want)-1])
		} else {
			want = append(want, id)
		}
		owed = append(owed, security.Owed{ID: id, APIInvokerID: "inv1", Destination: destInv1, CreatedAt: due, WindowFrom: due, NextAttempt: due,
			Notification: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: capif.UnexpectedReason}})
	}
	if err := e.db.Replace(ctx, sc, owed); err != nil {
		t.Fatal(err)
	}
	rec := &flaky{}
	svc := security.New(e.db, e.db, e.signer, rec, e.clock, e.cfg)
	rep, err := svc.DeliverDue(ctx)
	if err != nil || rep.Delivered != n {
		t.Fatalf("%+v %v", rep, err)
	}
	var got []string
	for _, d := range rec.attempts() {
		got = append(got, d.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("attempt order\n%v\nwant\n%v", got, want)
	}
}
