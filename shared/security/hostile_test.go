package security_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// queryLog records every Query the service sends to the store.
type queryLog struct {
	security.Store
	mu      sync.Mutex
	queries []security.Query
}

func (q *queryLog) Load(ctx context.Context, query security.Query) (*security.Snapshot, error) {
	q.mu.Lock()
	q.queries = append(q.queries, query)
	q.mu.Unlock()
	return q.Store.Load(ctx, query)
}

// A refusal on another invoker's resource is decided from the caller's registry record alone:
// nothing of the target is read, so the answer takes the same time whatever the target holds.
func TestOwnershipDecidedBeforeReadingTheTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	log := &queryLog{Store: e.db}
	svc := security.New(log, e.db, e.signer, e.notifier, e.clock, e.cfg)
	inv2 := security.Caller{ID: "inv2"}
	ops := map[string]func() error{
		"PUT":    func() error { _, err := svc.CreateSecurityContext(ctx, inv2, "inv1", standardRequest()); return err },
		"update": func() error { _, err := svc.UpdateSecurityContext(ctx, inv2, "inv1", standardRequest()); return err },
		"token": func() error {
			_, err := svc.ObtainAuthorization(ctx, inv2, "inv1", tokenReq("inv2", "", ""))
			return err
		},
		"Authorize": func() error { return svc.Authorize(ctx, security.ObtainSecurityMethod, inv2, "inv1") },
	}
	for name, op := range ops {
		log.queries = nil
		wantError(t, op(), security.KindForbidden, security.CauseNotOwner)
		want := []security.Query{{CallerID: "inv2"}}
		if !slices.EqualFunc(log.queries, want, func(a, b security.Query) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Errorf("%s: queries %+v, want only the caller's record %+v", name, log.queries, want)
		}
	}
}

// An AEF route asks the store to leave out a context without an entry for the AEF; each store
// does so (here the embedded one) and the answer is the same 404 as for no context at all.
func TestAEFWithoutEntryLooksLikeNoContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest()) // entries at aef1 and aef2 only
	snap, err := e.db.Load(ctx, security.Query{APIInvokerID: "inv1", ForAEF: "aef3"})
	if err != nil || snap.Context != nil {
		t.Fatalf("Load ForAEF aef3: %+v, %v; want no context", snap.Context, err)
	}
	if snap, _ := e.db.Load(ctx, security.Query{APIInvokerID: "inv1", ForAEF: "aef2"}); snap.Context == nil {
		t.Fatal("Load ForAEF aef2 left out a context that has an entry for it")
	}
	aef3 := security.Caller{ID: "aef3"}
	for _, id := range []string{"inv1", "inv2"} { // with and without a context
		_, err := e.svc.GetInvokerInfo(ctx, aef3, id, security.InvokerInfoQuery{})
		got := wantError(t, err, security.KindNotFound, security.CauseContextNotFound)
		want := fmt.Sprintf("no security context of API invoker %q for AEF %q", id, "aef3")
		if got.Detail != want {
			t.Errorf("%s: detail %q, want %q", id, got.Detail, want)
		}
		wantError(t, e.svc.RevokeAll(ctx, aef3, id), security.KindNotFound, security.CauseContextNotFound)
		wantError(t, e.svc.Revoke(ctx, aef3, id, &capif.SecurityNotification{APIInvokerID: id, APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage}),
			security.KindNotFound, security.CauseContextNotFound)
	}
}

// In one process no writer loses a race: 40 concurrent updates of one context on the embedded
// store all succeed even when the service may not retry a single conflict.
func TestEmbeddedWritersOfOneContextAreSerialized(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *security.Config) { c.MaxAttempts = 1 })
	e.create("inv1", standardRequest())
	svc := security.New(e.db, e.db, e.signer, e.notifier, e.clock, e.cfg) // no hook: the store's own locking
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			req := request(entry("aef2", capif.PSK))
			req.NotificationDestination = fmt.Sprintf("https://inv1.example.com/%d", i)
			if _, err := svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("update: %v", err)
	}
	if v := e.stored("inv1").Version; v != 41 {
		t.Errorf("version %d after 40 updates of version 1", v)
	}
}

// The context lock gives up with the request's deadline.
func TestContextLockHonoursDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	unlock, err := e.db.LockContext(ctx, "inv1")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	cx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.db.LockContext(cx, "inv1"); err == nil {
		t.Fatal("a second lock of a held context was granted")
	}
	other, err := e.db.LockContext(cx, "inv2")
	if err == nil {
		other()
	}
	unlock()
	unlock() // idempotent
	again, err := e.db.LockContext(ctx, "inv1")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}
