package security_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

const (
	rootAEF1 = "https://aef1.example.com/root"
	rootAEF2 = "https://aef2.example.com"
	pushAEF1 = rootAEF1 + "/aef-security/v1/revoke-authorization"
	pushAEF2 = rootAEF2 + "/aef-security/v1/revoke-authorization"
)

func strp(s string) *string { return &s }

// newPushEnv is newEnv with aef1 and aef2 reachable (aef3 has no root) and inv1's standard
// context.
func newPushEnv(t *testing.T, configure ...func(*security.Config)) *env {
	t.Helper()
	e := newEnv(t, configure...)
	e.importAEFs(security.AEFRecord{AefID: "aef1", AefSecurityRoot: strp(rootAEF1 + "/")}, security.AEFRecord{AefID: "aef2", AefSecurityRoot: strp(rootAEF2)})
	e.create("inv1", standardRequest())
	return e
}

func (e *env) importAEFs(aefs ...security.AEFRecord) {
	e.t.Helper()
	if err := e.svc.ImportRegistry(ctx, security.RegistryDoc{AEFs: aefs}); err != nil {
		e.t.Fatal(err)
	}
}

func push(aef string, cause capif.Cause, apiIDs ...string) capif.RevokeAuthorizationReq {
	return capif.RevokeAuthorizationReq{SupportedFeatures: "0",
		RevokeInfo: capif.SecurityNotification{APIInvokerID: "inv1", AefID: aef, APIIDs: apiIDs, Cause: cause}}
}

// TestPushOnEveryRevocation: each path of a revocation owes each affected AEF with a root one
// RevokeAuthorizationReq, in the change's write, and delivers it inline like the invoker's.
func TestPushOnEveryRevocation(t *testing.T) {
	t.Parallel()
	u := capif.UnexpectedReason
	tests := []struct {
		name   string
		revoke func(e *env) error
		want   map[string][]capif.RevokeAuthorizationReq
		notes  int // invoker notifications
	}{
		{"DELETE by aef2", func(e *env) error { return e.svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1") },
			map[string][]capif.RevokeAuthorizationReq{pushAEF2: {push("aef2", u, "apiC", "apiD")}}, 1},
		{"POST delete by aef1, with the revoked token", func(e *env) error {
			n := revocation("apiA")
			n.AccessToken = "the.revoked.token"
			return e.svc.Revoke(ctx, security.Caller{ID: "aef1"}, "inv1", n)
		}, map[string][]capif.RevokeAuthorizationReq{pushAEF1: {push("aef1", capif.OverlimitUsage, "apiA")}}, 1},
		{"remove-invoker", func(e *env) error { return e.svc.RemoveInvoker(ctx, "inv1") },
			map[string][]capif.RevokeAuthorizationReq{pushAEF1: {push("aef1", u, "apiA", "apiB", "apiD")}, pushAEF2: {push("aef2", u, "apiC", "apiD")}}, 2},
		{"remove-api", func(e *env) error { _, err := e.svc.RemoveAPI(ctx, "apiD"); return err },
			map[string][]capif.RevokeAuthorizationReq{pushAEF1: {push("aef1", u, "apiD")}, pushAEF2: {push("aef2", u, "apiD")}}, 2},
		{"import -prune", func(e *env) error {
			doc := registryDoc()
			doc.ServiceAPIs = slices.DeleteFunc(doc.ServiceAPIs, func(d capif.ServiceAPIDescription) bool { return d.APIID == "apiC" })
			o, err := e.svc.OmittedBy(ctx, doc)
			if err != nil {
				return err
			}
			return e.svc.Prune(ctx, o)
		}, map[string][]capif.RevokeAuthorizationReq{pushAEF2: {push("aef2", u, "apiC")}}, 1},
		{"revoke by the CCF", func(e *env) error {
			_, err := e.svc.RevokeByCCF(ctx, security.CCFRevocation{APIInvokerID: "inv1", APIIDs: []string{"apiB", "apiC"}, Cause: capif.AuthorizationIssue}, false)
			return err
		}, map[string][]capif.RevokeAuthorizationReq{pushAEF1: {push("aef1", capif.AuthorizationIssue, "apiB")}, pushAEF2: {push("aef2", capif.AuthorizationIssue, "apiC")}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newPushEnv(t)
			if err := tt.revoke(e); err != nil {
				t.Fatal(err)
			}
			if got := e.notifier.Pushes(t); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pushes %s, want %s", dump(got), dump(tt.want))
			}
			notes := e.notifier.Revocations(t)
			if len(notes) != tt.notes {
				t.Errorf("%d invoker notifications, want %d", len(notes), tt.notes)
			}
			for _, n := range notes {
				if n.AccessToken != "" && n.AefID != "aef1" {
					t.Errorf("an invoker notification carries a token it was not sent with: %s", dump(n))
				}
			}
			if p := e.pending(); len(p) != 0 {
				t.Errorf("delivered records stay in the outbox: %s", dump(p))
			}
			ids := map[string]bool{}
			for _, s := range e.notifier.Sent() {
				if ids[s.ID] {
					t.Errorf("two deliveries share the id %s", s.ID)
				}
				ids[s.ID] = true
			}
		})
	}
}

// TestPushWrittenWithTheChange: the AEF's record is in the outbox when the change commits,
// with its kind and destination; the notifier failing leaves it there for the worker.
func TestPushWrittenWithTheChange(t *testing.T) {
	t.Parallel()
	e := newPushEnv(t)
	e.notifier.Err = errors.New("no answer")
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	p := e.pending()
	kinds := map[security.OwedKind]security.Owed{}
	for _, o := range p {
		kinds[o.Receiver()] = o
	}
	if len(p) != 2 || kinds[security.ToAEF].Destination != pushAEF1 || kinds[security.ToInvoker].Destination != destInv1 || kinds[security.ToInvoker].Kind != "" {
		t.Fatalf("outbox %s, want the invoker's record (no kind) and the push to %s", dump(p), pushAEF1)
	}
	if kinds[security.ToAEF].Attempts != 1 {
		t.Errorf("the push was not attempted inline: %s", dump(kinds[security.ToAEF]))
	}
}

// TestPushModes: AEFPushQueued leaves the push to the worker (unclaimed, not attempted
// inline); AEFPushOff writes none; an AEF whose root was removed gets none.
func TestPushModes(t *testing.T) {
	t.Parallel()
	t.Run("queued", func(t *testing.T) {
		e := newPushEnv(t, func(c *security.Config) { c.AEFPush = security.AEFPushQueued })
		if err := e.svc.RemoveInvoker(ctx, "inv1"); err != nil {
			t.Fatal(err)
		}
		if got := e.notifier.Pushes(t); len(got) != 0 {
			t.Fatalf("pushed inline: %s", dump(got))
		}
		p := e.pending()
		if len(p) != 2 || p[0].Receiver() != security.ToAEF || !p[0].ClaimedUntil.IsZero() {
			t.Fatalf("outbox %s, want two unclaimed pushes", dump(p))
		}
		rep, err := e.svc.DeliverDue(ctx)
		if err != nil || rep.Delivered != 2 {
			t.Fatalf("worker: %+v, %v", rep, err)
		}
		if got := e.notifier.Pushes(t); len(got) != 2 {
			t.Errorf("the worker pushed %s", dump(got))
		}
	})
	t.Run("off", func(t *testing.T) {
		e := newPushEnv(t, func(c *security.Config) { c.AEFPush = security.AEFPushOff })
		if err := e.svc.RemoveInvoker(ctx, "inv1"); err != nil {
			t.Fatal(err)
		}
		if got := e.notifier.Pushes(t); len(got) != 0 || len(e.pending()) != 0 || len(e.notifier.Revocations(t)) != 2 {
			t.Fatalf("pushes %s, outbox %s", dump(got), dump(e.pending()))
		}
	})
	t.Run("root removed", func(t *testing.T) {
		e := newPushEnv(t)
		e.importAEFs(security.AEFRecord{AefID: "aef2", AefSecurityRoot: strp("")})
		if err := e.svc.RemoveInvoker(ctx, "inv1"); err != nil {
			t.Fatal(err)
		}
		if got := e.notifier.Pushes(t); len(got) != 1 || got[pushAEF1] == nil {
			t.Fatalf("pushes %s, want aef1's only", dump(got))
		}
	})
}

func TestRevokeByCCF(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    security.CCFRevocation
		left []string // nil: context deleted
		aefs []string // the AEFs notified, in order
		kind security.Kind
	}{
		{name: "one AEF", r: security.CCFRevocation{AefID: "aef2", Cause: capif.OtherReason},
			left: []string{"aef1=aef1/apiA,aef1/apiB,aef1/apiD", "if:2001:db8::1=aef1/apiD"}, aefs: []string{"aef2"}},
		{name: "one API at every AEF", r: security.CCFRevocation{APIIDs: []string{"apiD"}, Cause: capif.OverlimitUsage},
			left: []string{"aef1=aef1/apiA,aef1/apiB", "aef2=aef2/apiC"}, aefs: []string{"aef1", "aef2"}},
		{name: "one API at one AEF", r: security.CCFRevocation{AefID: "aef1", APIIDs: []string{"apiD"}, Cause: capif.UnexpectedReason},
			left: []string{"aef1=aef1/apiA,aef1/apiB", "aef2=aef2/apiC,aef2/apiD", "if:2001:db8::1=aef2/apiD"}, aefs: []string{"aef1"}},
		{name: "everything", r: security.CCFRevocation{Cause: capif.AuthorizationIssue}, aefs: []string{"aef1", "aef2"}},
		{name: "a cause Rel-19 does not know", r: security.CCFRevocation{Cause: "BORED"}, kind: security.KindInvalid},
		{name: "no cause", r: security.CCFRevocation{}, kind: security.KindInvalid},
		{name: "nothing matches", r: security.CCFRevocation{AefID: "aef3", Cause: capif.OtherReason}, kind: security.KindNotFound},
		{name: "an API the AEF does not serve", r: security.CCFRevocation{AefID: "aef2", APIIDs: []string{"apiA"}, Cause: capif.OtherReason}, kind: security.KindNotFound},
		{name: "no context", r: security.CCFRevocation{APIInvokerID: "inv2", Cause: capif.OtherReason}, kind: security.KindNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newPushEnv(t)
			if tt.r.APIInvokerID == "" {
				tt.r.APIInvokerID = "inv1"
			}
			before := entryTargets(e.stored("inv1"))
			dry, err := e.svc.RevokeByCCF(ctx, tt.r, true)
			if tt.kind != 0 {
				wantError(t, err, tt.kind, "")
				_, err = e.svc.RevokeByCCF(ctx, tt.r, false)
				wantError(t, err, tt.kind, "")
				if got := entryTargets(e.stored("inv1")); !slices.Equal(got, before) {
					t.Errorf("a refused revocation changed the context: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := entryTargets(e.stored("inv1")); !slices.Equal(got, before) || len(e.notifier.Sent()) != 0 || len(e.pending()) != 0 {
				t.Fatalf("a dry run wrote or sent: context %v, sent %d", got, len(e.notifier.Sent()))
			}
			owed, err := e.svc.RevokeByCCF(ctx, tt.r, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(owed) != len(dry) {
				t.Errorf("the dry run owed %d records, the revocation %d", len(dry), len(owed))
			}
			if got := entryTargets(e.stored("inv1")); !slices.Equal(got, tt.left) {
				t.Errorf("left %v, want %v", got, tt.left)
			}
			var aefs []string
			for _, n := range e.notifier.Revocations(t) {
				aefs = append(aefs, n.AefID)
				if n.Cause != tt.r.Cause {
					t.Errorf("cause %q, want %q", n.Cause, tt.r.Cause)
				}
			}
			slices.Sort(aefs) // delivered several at a time: in no fixed order
			if !slices.Equal(aefs, tt.aefs) || len(e.notifier.Pushes(t)) != len(tt.aefs) {
				t.Errorf("notified %v and pushed %s, want %v", aefs, dump(e.notifier.Pushes(t)), tt.aefs)
			}
		})
	}
}

func TestImportAEFSecurityRoot(t *testing.T) {
	t.Parallel()
	root := func(e *env, id string) string {
		t.Helper()
		doc, err := e.svc.ExportRegistry(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range doc.AEFs {
			if a.AefID == id && a.AefSecurityRoot != nil {
				return *a.AefSecurityRoot
			}
		}
		return ""
	}
	e := newEnv(t)
	e.importAEFs(security.AEFRecord{AefID: "aef1", AefSecurityRoot: strp("https://aef1.example.com:8443/x/")})
	if got := root(e, "aef1"); got != "https://aef1.example.com:8443/x" {
		t.Errorf("root %q after import", got)
	}
	e.importAEFs(security.AEFRecord{AefID: "aef1"})
	if got := root(e, "aef1"); got != "https://aef1.example.com:8443/x" {
		t.Errorf("an import that omits the root changed it to %q", got)
	}
	e.importAEFs(security.AEFRecord{AefID: "aef1", AefSecurityRoot: strp("")})
	if got := root(e, "aef1"); got != "" {
		t.Errorf(`"" left the root %q`, got)
	}
	for _, bad := range []string{"http://aef.example.com", "https://user:pw@aef.example.com", "https://aef.example.com?q=1",
		"https://aef.example.com/#f", "https:aef.example.com", "https:///x", "aef.example.com", "https://aef.example.com?"} {
		err := e.svc.ImportRegistry(ctx, security.RegistryDoc{AEFs: []security.AEFRecord{{AefID: "aef1", AefSecurityRoot: strp(bad)}}})
		if err == nil || !strings.Contains(err.Error(), "aefs[0]: aefSecurityRoot") || strings.Contains(err.Error(), bad) {
			t.Errorf("root %q: %v", bad, err)
		}
	}
}

func TestReservedCCFName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *security.Config) { c.CCFName = "core-1" })
	for _, doc := range []security.RegistryDoc{
		{AEFs: []security.AEFRecord{{AefID: "ccf"}}},
		{APIInvokers: []security.InvokerRecord{{APIInvokerID: "core-1"}}},
	} {
		if err := e.svc.ImportRegistry(ctx, doc); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("import %s: %v, want a refusal naming the reserved id", dump(doc), err)
		}
	}
}

// TestBacklog: the live records per receiver with the age of the oldest, and the dead letters.
func TestBacklog(t *testing.T) {
	t.Parallel()
	e := newPushEnv(t)
	e.notifier.Err = errors.New("no answer")
	if err := e.svc.RemoveInvoker(ctx, "inv1"); err != nil { // owes inv1 two notifications, aef1 and aef2 a push each
		t.Fatal(err)
	}
	e.clock.Advance(90 * time.Second)
	b, err := e.svc.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := security.Backlog{PendingInvoker: 2, PendingAEF: 2, OldestInvoker: 90 * time.Second, OldestAEF: 90 * time.Second}
	if b != want {
		t.Fatalf("backlog %+v, want %+v", b, want)
	}
	e.notifier.Err = security.ErrUndeliverable
	if _, err := e.svc.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := e.svc.Backlog(ctx); b != (security.Backlog{DeadLetters: 4}) {
		t.Errorf("after dead-lettering: %+v", b)
	}
}
