package security_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

func revocation(apiIDs ...string) *capif.SecurityNotification {
	return &capif.SecurityNotification{APIInvokerID: "inv1", APIIDs: apiIDs, Cause: capif.OverlimitUsage}
}

// entryTargets summarises the stored context as "entry index: targets".
func entryTargets(sc *security.SecurityContext) []string {
	if sc == nil {
		return nil
	}
	var out []string
	for _, e := range sc.Entries {
		var ts []string
		for _, t := range e.Targets {
			ts = append(ts, t.AefID+"/"+t.APIID)
		}
		slices.Sort(ts)
		out = append(out, e.AefID+e.APIID+ifName(e.InterfaceDetails)+"="+strings.Join(ts, ","))
	}
	return out
}

func ifName(d *capif.InterfaceDescription) string {
	if d == nil {
		return ""
	}
	return "if:" + d.Fqdn + d.Ipv4Addr + d.Ipv6Addr
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		caller string
		body   *capif.SecurityNotification // nil: DELETE
		left   []string                    // the entries left, as entryTargets; nil: context deleted
		note   capif.SecurityNotification
	}{
		{name: "POST one API of aef2", caller: "aef2", body: revocation("apiC"),
			left: []string{"aef1=aef1/apiA,aef1/apiB,aef1/apiD", "aef2=aef2/apiD", "if:2001:db8::1=aef1/apiD,aef2/apiD"},
			note: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: capif.OverlimitUsage}},
		{name: "POST an API in two entries", caller: "aef2", body: revocation("apiD"),
			left: []string{"aef1=aef1/apiA,aef1/apiB,aef1/apiD", "aef2=aef2/apiC", "if:2001:db8::1=aef1/apiD"},
			note: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiD"}, Cause: capif.OverlimitUsage}},
		{name: "POST every API of aef2 empties an entry", caller: "aef2", body: revocation("apiD", "apiC"),
			left: []string{"aef1=aef1/apiA,aef1/apiB,aef1/apiD", "if:2001:db8::1=aef1/apiD"},
			note: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC", "apiD"}, Cause: capif.OverlimitUsage}},
		{name: "POST with the caller's own aefId", caller: "aef1", body: func() *capif.SecurityNotification {
			n := revocation("apiB")
			n.AefID = "aef1"
			n.Cause = "SOME_FUTURE_CAUSE"
			return n
		}(),
			left: []string{"aef1=aef1/apiA,aef1/apiD", "aef2=aef2/apiC,aef2/apiD", "if:2001:db8::1=aef1/apiD,aef2/apiD"},
			note: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiB"}, Cause: "SOME_FUTURE_CAUSE"}},
		{name: "DELETE by aef2", caller: "aef2", body: nil,
			left: []string{"aef1=aef1/apiA,aef1/apiB,aef1/apiD", "if:2001:db8::1=aef1/apiD"},
			note: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC", "apiD"}, Cause: capif.UnexpectedReason}},
		{name: "DELETE by aef1", caller: "aef1", body: nil,
			left: []string{"aef2=aef2/apiC,aef2/apiD", "if:2001:db8::1=aef2/apiD"},
			note: capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiA", "apiB", "apiD"}, Cause: capif.UnexpectedReason}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.create("inv1", standardRequest())
			// At delivery time the change is committed and its outbox record is there.
			e.notifier.OnSend = func(dest string, body any) {
				if got := entryTargets(e.stored("inv1")); !slices.Equal(got, tt.left) {
					t.Errorf("notified before the commit: stored %v", got)
				}
				p := e.pending()
				if len(p) != 1 || !reflect.DeepEqual(p[0].Notification, body) || p[0].Destination != dest || p[0].APIInvokerID != "inv1" {
					t.Errorf("outbox at delivery time %s, delivering %s", dump(p), dump(body))
				}
			}
			var err error
			if tt.body == nil {
				err = e.svc.RevokeAll(ctx, security.Caller{ID: tt.caller}, "inv1")
			} else {
				err = e.svc.Revoke(ctx, security.Caller{ID: tt.caller}, "inv1", tt.body)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := entryTargets(e.stored("inv1")); !slices.Equal(got, tt.left) {
				t.Errorf("left %v, want %v", got, tt.left)
			}
			if sc := e.stored("inv1"); sc.Version != 2 {
				t.Errorf("version %d after one revocation", sc.Version)
			}
			if got := e.notifier.Revocations(t); !reflect.DeepEqual(got, []capif.SecurityNotification{tt.note}) {
				t.Errorf("notifications %s, want %s", dump(got), dump(tt.note))
			}
			if e.notifier.Sent()[0].Destination != destInv1 {
				t.Errorf("notified %s", e.notifier.Sent()[0].Destination)
			}
			if p := e.pending(); len(p) != 0 {
				t.Errorf("a delivered notification stays in the outbox: %s", dump(p))
			}
		})
	}
}

func TestRevokeEverythingDeletesContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Revoke(ctx, security.Caller{ID: "aef2"}, "inv1", revocation("apiC", "apiD")); err != nil {
		t.Fatal(err)
	}
	if sc := e.stored("inv1"); sc != nil {
		t.Errorf("an empty context is kept: %s", dump(sc))
	}
	if n := len(e.notifier.Sent()); n != 2 {
		t.Errorf("%d notifications, want 2", n)
	}
	// Now there is no context: 404 for everyone, and the invoker may PUT again.
	wantError(t, e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1"), security.KindNotFound, security.CauseContextNotFound)
	_, err := e.svc.GetInvokerInfo(ctx, security.Caller{ID: "aef2"}, "inv1", security.InvokerInfoQuery{AuthenticationInfo: false, AuthorizationInfo: false})
	wantError(t, err, security.KindNotFound, security.CauseContextNotFound)
	e.create("inv1", standardRequest())
}

func TestRevokeRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		caller   string
		body     *capif.SecurityNotification
		bodyErr  error
		kind     security.Kind
		cause    string
		pointers []string
	}{
		{name: "no body", caller: "aef1", kind: security.KindInvalid, cause: security.CauseInvalidParameter},
		{name: "undecodable body", caller: "aef1", bodyErr: decodeErr("broken"), kind: security.KindInvalid, cause: causeMalformed},
		{name: "apiInvokerId of another invoker", caller: "aef1", body: func() *capif.SecurityNotification { n := revocation("apiA"); n.APIInvokerID = "inv2"; return n }(), kind: security.KindInvalid, cause: security.CauseInvalidParameter, pointers: []string{"/apiInvokerId"}},
		{name: "no apiIds", caller: "aef1", body: revocation(), kind: security.KindInvalid, cause: security.CauseInvalidParameter, pointers: []string{"/apiIds"}},
		{name: "no cause", caller: "aef1", body: func() *capif.SecurityNotification { n := revocation("apiA"); n.Cause = ""; return n }(), kind: security.KindInvalid, cause: security.CauseInvalidParameter, pointers: []string{"/cause"}},
		{name: "aefId of another AEF", caller: "aef1", body: func() *capif.SecurityNotification { n := revocation("apiD"); n.AefID = "aef2"; return n }(), kind: security.KindForbidden, cause: security.CauseRoleNotAllowed},
		{name: "aefId of an unknown AEF", caller: "aef1", body: func() *capif.SecurityNotification { n := revocation("apiD"); n.AefID = "aef9"; return n }(), kind: security.KindForbidden, cause: security.CauseRoleNotAllowed},
		{name: "API of another AEF", caller: "aef1", body: revocation("apiC"), kind: security.KindForbidden, cause: security.CauseAPINotPublished},
		{name: "unknown API", caller: "aef1", body: revocation("apiZ"), kind: security.KindForbidden, cause: security.CauseAPINotPublished},
		{name: "one API of another AEF among its own", caller: "aef1", body: revocation("apiA", "apiC"), kind: security.KindForbidden, cause: security.CauseAPINotPublished},
		{name: "own API not in the context", caller: "aef1", body: revocation("apiE"), kind: security.KindNotFound, cause: security.CauseAPINotInContext},
		{name: "own APIs, one not in the context", caller: "aef1", body: revocation("apiA", "apiE"), kind: security.KindNotFound, cause: security.CauseAPINotInContext},
		{name: "not published beats not in the context", caller: "aef1", body: revocation("apiE", "apiC"), kind: security.KindForbidden, cause: security.CauseAPINotPublished},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			// aef1 also publishes apiE, which the context does not cover.
			doc := registryDoc()
			doc.ServiceAPIs = append(doc.ServiceAPIs, capif.ServiceAPIDescription{APIID: "apiE", APIName: "epsilon", AefProfiles: []capif.AefProfile{{AefID: "aef1"}}})
			e.create("inv1", standardRequest())
			if err := e.svc.ImportRegistry(ctx, doc); err != nil {
				t.Fatal(err)
			}
			before := e.stored("inv1")
			err := refused(e.svc, security.RevokeAuthorization, tt.caller, "inv1", tt.bodyErr)
			if tt.bodyErr == nil {
				err = e.svc.Revoke(ctx, security.Caller{ID: tt.caller}, "inv1", tt.body)
			}
			wantError(t, err, tt.kind, tt.cause, tt.pointers...)
			if after := e.stored("inv1"); !reflect.DeepEqual(before, after) {
				t.Errorf("nothing may be revoked: %s", dump(after))
			}
			if len(e.notifier.Sent()) != 0 || len(e.pending()) != 0 {
				t.Error("a refused revocation owes a notification")
			}
		})
	}
}

// An AEF whose APIs all moved elsewhere (re-import) still has targets in an older context: it may
// revoke them all with DELETE, and a POST naming an API it no longer publishes is refused.
func TestRevokeByAEFThatNoLongerPublishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", request(entry("aef2", capif.PSK)))
	doc := registryDoc()
	for i := range doc.ServiceAPIs {
		for j := range doc.ServiceAPIs[i].AefProfiles {
			if doc.ServiceAPIs[i].AefProfiles[j].AefID == "aef2" {
				doc.ServiceAPIs[i].AefProfiles[j].AefID = "aef3"
			}
		}
	}
	if err := e.svc.ImportRegistry(ctx, doc); err != nil {
		t.Fatal(err)
	}
	err := e.svc.Revoke(ctx, security.Caller{ID: "aef2"}, "inv1", revocation("apiC"))
	wantError(t, err, security.KindForbidden, security.CauseAPINotPublished)
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	if sc := e.stored("inv1"); sc != nil {
		t.Errorf("context left: %s", dump(sc))
	}
}

func TestRevokeNotifierFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.notifier.Err = errors.New("503 from invoker")
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
		t.Fatalf("a failed notification failed the revocation: %v", err)
	}
	if got := entryTargets(e.stored("inv1")); len(got) != 2 {
		t.Errorf("revocation not committed: %v", got)
	}
	p := e.pending()
	want := capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC", "apiD"}, Cause: capif.UnexpectedReason}
	if len(p) != 1 || !reflect.DeepEqual(p[0].Notification, want) || p[0].Destination != destInv1 || p[0].ID == "" {
		t.Errorf("outbox %s, want one record of %s", dump(p), dump(want))
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "notification not delivered; will retry") || !strings.Contains(logs, "503 from invoker") || !strings.Contains(logs, `"aefId":"aef2"`) {
		t.Errorf("failure not logged: %s", logs)
	}
	if strings.Contains(logs, "k=secret") {
		t.Errorf("log shows the destination's query: %s", logs)
	}
}

// Every revocation owes a notification with its own outbox id.
func TestRevokeOutboxIDsAreUnique(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.notifier.Err = errors.New("down")
	for _, api := range []string{"apiA", "apiB"} {
		if err := e.svc.Revoke(ctx, security.Caller{ID: "aef1"}, "inv1", revocation(api)); err != nil {
			t.Fatal(err)
		}
	}
	if p := e.pending(); len(p) != 2 || p[0].ID == p[1].ID {
		t.Errorf("outbox %s", dump(p))
	}
}
