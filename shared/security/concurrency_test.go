package security_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// Every conditional write keeps conflicting: after MaxAttempts, 503 with Retry-After and nothing
// changed.
func TestConflictsExhaustRetries(t *testing.T) {
	t.Parallel()
	ops := []struct {
		name string
		run  func(e *env) error
	}{
		{"update", func(e *env) error {
			_, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK)))
			return err
		}},
		{"revoke all", func(e *env) error { return e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1") }},
		{"revoke some", func(e *env) error { return e.svc.Revoke(ctx, security.Caller{ID: "aef2"}, "inv1", revocation("apiC")) }},
		{"remove API", func(e *env) error { _, err := e.svc.RemoveAPI(ctx, "apiD"); return err }},
	}
	// RemoveInvoker is not here: it deletes the context in its registry change, whose races
	// are the Registry's (registrytx_test.go, and each adapter's tests).
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { // the retry backoff passes in the bubble's time
				e := newEnv(t, func(c *security.Config) { c.MaxAttempts = 3 })
				e.create("inv1", standardRequest())
				before := e.stored("inv1")
				e.hooks.Conflicts = 1000
				err := op.run(e)
				got := wantError(t, err, security.KindUnavailable, security.CauseTemporarilyUnavail)
				if got.RetryAfter <= 0 {
					t.Errorf("Retry-After %d", got.RetryAfter)
				}
				if e.hooks.ReplaceCalls() != 3 {
					t.Errorf("%d attempts, want MaxAttempts = 3", e.hooks.ReplaceCalls())
				}
				if after := e.stored("inv1"); !reflect.DeepEqual(before, after) {
					t.Errorf("state changed: %s", dump(after))
				}
				if len(e.notifier.Sent()) != 0 || len(e.pending()) != 0 {
					t.Error("a write that never happened owes a notification")
				}
				snap, err := e.db.Load(ctx, security.Query{CallerID: "inv1", AefIDs: []string{"aef1"}})
				if err != nil || snap.Caller == nil || !slices.ContainsFunc(snap.AEFs["aef1"].APIs, func(p security.PublishedAPI) bool { return p.APIID == "apiD" }) {
					t.Errorf("the registry changed although the contexts did not: %v %s", err, dump(snap))
				}
			})
		})
	}
}

// Unset, MaxAttempts is DefaultMaxAttempts, and the backoff of all its lost races is at most
// MaxConflictWait (what the Lambda budget counts on).
func TestDefaultMaxAttempts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *security.Config) { c.MaxAttempts = 0 })
		e.create("inv1", standardRequest())
		e.hooks.Conflicts = 1000
		start := time.Now()
		wantError(t, e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1"), security.KindUnavailable, security.CauseTemporarilyUnavail)
		if e.hooks.ReplaceCalls() != security.DefaultMaxAttempts {
			t.Errorf("the default allows %d attempts, want %d", e.hooks.ReplaceCalls(), security.DefaultMaxAttempts)
		}
		if waited, most := time.Since(start), security.MaxConflictWait(security.DefaultMaxAttempts); waited > most || waited < most/4 {
			t.Errorf("the backoff took %v, want between a quarter of %v and all of it", waited, most)
		}
	})
}

// A few conflicts are absorbed: the operation re-reads and succeeds.
func TestConflictsRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *security.Config) { c.MaxAttempts = 4 })
		e.create("inv1", standardRequest())
		e.hooks.Conflicts = 3
		out, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK)))
		if err != nil {
			t.Fatal(err)
		}
		if e.hooks.ReplaceCalls() != 4 || len(out.SecurityInfo) != 1 || e.stored("inv1").Version != 2 {
			t.Errorf("%d attempts; answer %s; stored %s", e.hooks.ReplaceCalls(), dump(out), dump(e.stored("inv1")))
		}
	})
}

// A real concurrent writer: aef2 revokes between aef1's read and write. aef1's write conflicts,
// is re-applied on the new state, and both revocations hold, each with its own notification.
func TestConcurrentRevocationsBothApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	other := security.New(e.db, e.db, e.signer, e.notifier, e.clock, e.cfg)
	e.hooks.BeforeReplace = func(*security.SecurityContext) {
		if err := other.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
			t.Errorf("concurrent revocation: %v", err)
		}
	}
	if err := e.svc.Revoke(ctx, security.Caller{ID: "aef1"}, "inv1", revocation("apiA")); err != nil {
		t.Fatal(err)
	}
	if got, want := entryTargets(e.stored("inv1")), []string{"aef1=aef1/apiB,aef1/apiD", "if:2001:db8::1=aef1/apiD"}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if e.hooks.ReplaceCalls() != 2 {
		t.Errorf("%d writes, want 2 (one conflict)", e.hooks.ReplaceCalls())
	}
	got := e.notifier.Revocations(t)
	want := []capif.SecurityNotification{
		{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC", "apiD"}, Cause: capif.UnexpectedReason},
		{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("notifications %s", dump(got))
	}
	if p := e.pending(); len(p) != 0 {
		t.Errorf("outbox %s", dump(p))
	}
}

// An update racing another update: the loser re-reads, so the PSKs it keeps are the winner's.
func TestConcurrentUpdateKeepsWinnersPSK(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", request(ifEntry(ifB, capif.PKI)))
	other := security.New(e.db, e.db, e.signer, e.notifier, e.clock, e.cfg)
	var winnerPSK string
	e.hooks.BeforeReplace = func(*security.SecurityContext) {
		out, err := other.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(ifEntry(ifB, capif.PSK)))
		if err != nil {
			t.Errorf("concurrent update: %v", err)
			return
		}
		winnerPSK = out.SecurityInfo[0].AuthenticationInfo
	}
	out, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(ifEntry(ifB, capif.PSK), entry("aef2", capif.PSK)))
	if err != nil {
		t.Fatal(err)
	}
	if winnerPSK == "" || out.SecurityInfo[0].AuthenticationInfo != winnerPSK {
		t.Errorf("PSK %q after the race, the winner stored %q", out.SecurityInfo[0].AuthenticationInfo, winnerPSK)
	}
	if sc := e.stored("inv1"); sc.Version != 3 || len(sc.Entries) != 2 {
		t.Errorf("stored %s", dump(sc))
	}
}

// The context disappears between the read and the conditional write (the last entry revoked, the
// invoker offboarded): the operation answers as for a missing context, not with an internal error.
func TestContextVanishesBeforeWrite(t *testing.T) {
	t.Parallel()
	ops := []struct {
		name string
		run  func(e *env) error
		kind security.Kind
	}{
		{"update", func(e *env) error {
			_, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK)))
			return err
		}, security.KindNotFound},
		{"revoke all", func(e *env) error { return e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1") }, security.KindNotFound},
		{"revoke some", func(e *env) error { return e.svc.Revoke(ctx, security.Caller{ID: "aef2"}, "inv1", revocation("apiC")) }, security.KindNotFound},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			e := newEnv(t)
			e.create("inv1", standardRequest())
			e.hooks.BeforeReplace = func(sc *security.SecurityContext) {
				gone := *e.stored("inv1")
				gone.Entries = nil
				if err := e.db.Replace(ctx, &gone, nil); err != nil {
					t.Errorf("deleting the context: %v", err)
				}
			}
			err := op.run(e)
			wantError(t, err, op.kind, security.CauseContextNotFound)
			if sc := e.stored("inv1"); sc != nil {
				t.Errorf("context resurrected: %s", dump(sc))
			}
			if len(e.notifier.Sent()) != 0 || len(e.pending()) != 0 {
				t.Error("a revocation that found nothing owes a notification")
			}
		})
	}
}

// RemoveAPI over a context that vanishes mid-way completes without error and without announcing
// a revocation that was never written.
func TestRemoveAPIContextVanishes(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"before the write", "after a conflict"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			e.create("inv1", standardRequest())
			e.create("inv2", &capif.ServiceSecurity{NotificationDestination: "https://inv2.example.com/", SecurityInfo: []capif.SecurityInformation{entry("aef2", capif.PSK)}})
			deleteInv1 := func() {
				gone := *e.stored("inv1")
				gone.Entries = nil
				if err := e.db.Replace(ctx, &gone, nil); err != nil {
					t.Errorf("deleting the context: %v", err)
				}
			}
			if how == "before the write" {
				e.hooks.BeforeReplace = func(*security.SecurityContext) { deleteInv1() }
			} else {
				e.hooks.Conflicts = 1
				e.hooks.OnConflict = deleteInv1
			}
			n, err := e.svc.RemoveAPI(ctx, "apiD")
			if err != nil || n != 1 {
				t.Errorf("RemoveAPI = %d, %v; want 1 (inv2 only), nil", n, err)
			}
			for _, sn := range e.notifier.Revocations(t) {
				if sn.APIInvokerID != "inv2" {
					t.Errorf("notified %s of a revocation that was never written", dump(sn))
				}
			}
			if len(e.notifier.Sent()) != 1 {
				t.Errorf("%d notifications, want 1", len(e.notifier.Sent()))
			}
		})
	}
}

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.hooks.LoadErr = fmt.Errorf("dynamodb: %w", security.ErrUnavailable)
	ops := map[string]func() error{
		"create": func() error {
			_, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv2"}, "inv2", standardRequest())
			return err
		},
		"update": func() error {
			_, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", standardRequest())
			return err
		},
		"get": func() error {
			_, err := e.svc.GetInvokerInfo(ctx, security.Caller{ID: "aef1"}, "inv1", security.InvokerInfoQuery{AuthenticationInfo: true, AuthorizationInfo: true})
			return err
		},
		"revoke":     func() error { return e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1") },
		"remove API": func() error { _, err := e.svc.RemoveAPI(ctx, "apiA"); return err },
		"token": func() error {
			_, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
			return err
		},
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, security.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	e.hooks.LoadErr = nil
	if sc := e.stored("inv1"); sc == nil || len(sc.Entries) != 3 {
		t.Errorf("a failed operation changed the context: %s", dump(sc))
	}
}

// The retry backoff gives up when the request's deadline passes.
func TestRetryHonoursDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *security.Config) { c.MaxAttempts = 1000 })
		e.create("inv1", standardRequest())
		e.hooks.Conflicts = 1 << 30
		cx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := e.svc.RevokeAll(cx, security.Caller{ID: "aef1"}, "inv1")
		// Either the backoff or the store notices the deadline first; the HTTP layer answers 503 to both.
		var se *security.Error
		if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &se) && se.Kind == security.KindUnavailable) {
			t.Errorf("error %v, want 503 material", err)
		}
		if took := time.Since(start); took != 50*time.Millisecond {
			t.Errorf("retried for %v, want until the 50 ms deadline", took)
		}
	})
}
