package security_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// The identity rules of the invoker routes, in order: unknown caller 401, wrong role 403 (even for
// an unknown id), another invoker's id 403 (whether or not it exists); only then the body.
func TestInvokerRouteIdentity(t *testing.T) {
	t.Parallel()
	bodyErr := decodeErr("broken")
	tests := []struct {
		name          string
		caller, id    string
		bodyErr       error
		kind          security.Kind
		cause         string
		validRequest  bool
		createOnly    bool
		wantBodyError bool
		pointers      []string
	}{
		{name: "no caller", id: "inv1", kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated, validRequest: true},
		{name: "unknown caller", caller: "stranger", id: "inv1", kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated, validRequest: true},
		{name: "unknown caller on its own id", caller: "stranger", id: "stranger", kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated, validRequest: true},
		{name: "unknown caller, bad body", caller: "stranger", id: "inv1", bodyErr: bodyErr, kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated},
		{name: "over-long caller", caller: strings.Repeat("i", 300), id: strings.Repeat("i", 300), kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated, validRequest: true},
		{name: "AEF", caller: "aef1", id: "inv1", kind: security.KindForbidden, cause: security.CauseRoleNotAllowed, validRequest: true},
		{name: "AEF on an unknown id", caller: "aef1", id: "nobody", kind: security.KindForbidden, cause: security.CauseRoleNotAllowed, validRequest: true},
		{name: "AEF on its own id", caller: "aef1", id: "aef1", kind: security.KindForbidden, cause: security.CauseRoleNotAllowed, validRequest: true},
		{name: "AEF, bad body", caller: "aef1", id: "inv1", bodyErr: bodyErr, kind: security.KindForbidden, cause: security.CauseRoleNotAllowed},
		{name: "another invoker", caller: "inv2", id: "inv1", kind: security.KindForbidden, cause: security.CauseNotOwner, validRequest: true},
		{name: "invoker on an unknown id", caller: "inv2", id: "nobody", kind: security.KindForbidden, cause: security.CauseNotOwner, validRequest: true},
		{name: "another invoker, bad body", caller: "inv2", id: "inv1", bodyErr: bodyErr, kind: security.KindForbidden, cause: security.CauseNotOwner},
		{name: "owner, bad body", caller: "inv1", id: "inv1", bodyErr: bodyErr, kind: security.KindInvalid, cause: causeMalformed, wantBodyError: true},
		{name: "owner, invalid body", caller: "inv1", id: "inv1", kind: security.KindInvalid, cause: security.CauseInvalidParameter, pointers: []string{"/securityInfo"}},
		{name: "owner, existing context", caller: "inv1", id: "inv1", kind: security.KindForbidden, cause: security.CauseContextExists, validRequest: true, createOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.create("inv1", standardRequest())
			before := e.stored("inv1")
			req := request(entry("aef2", capif.PSK))
			if !tt.validRequest {
				req.SecurityInfo = nil
			}
			create := func() error {
				if tt.bodyErr != nil {
					return refused(e.svc, security.ObtainSecurityMethod, tt.caller, tt.id, tt.bodyErr)
				}
				_, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: tt.caller}, tt.id, req)
				return err
			}
			err := create()
			wantError(t, err, tt.kind, tt.cause, tt.pointers...)
			if tt.wantBodyError && !errors.Is(err, tt.bodyErr) {
				t.Errorf("create: error %v, want the body error itself", err)
			}
			if tt.createOnly {
				return
			}
			if tt.bodyErr == nil {
				_, err = e.svc.UpdateSecurityContext(ctx, security.Caller{ID: tt.caller}, tt.id, req)
			}
			wantError(t, err, tt.kind, tt.cause, tt.pointers...)
			if tt.wantBodyError && !errors.Is(err, tt.bodyErr) {
				t.Errorf("update: error %v, want the body error itself", err)
			}
			if after := e.stored("inv1"); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused request changed the context:\n%s", dump(after))
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := e.create("inv1", request(entry("aef2", capif.PSK), ifEntry(ifB, capif.PSK), ifEntry(ifShared, capif.PSK)))
	pskAEF2 := created.SecurityInfo[0].AuthenticationInfo
	pskB := created.SecurityInfo[1].AuthenticationInfo
	pskShared := created.SecurityInfo[2].AuthenticationInfo

	// Same aef2 target, ifB now narrowed by apiId (another target), ifShared now PKI, ifA2 new.
	req := request(entry("aef2", capif.PSK), withAPI(ifEntry(ifB, capif.PSK), "apiB"), ifEntry(ifShared, capif.PKI), ifEntry(ifA2, capif.PKI))
	req.NotificationDestination = "https://new.example.com/cb"
	req.SupportedFeatures = "4"
	out, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req)
	if err != nil {
		t.Fatal(err)
	}
	if out.SecurityInfo[0].AuthenticationInfo != pskAEF2 {
		t.Error("the PSK of an entry whose target is unchanged was not kept")
	}
	if got := out.SecurityInfo[1].AuthenticationInfo; got == pskB || got == "" {
		t.Errorf("an entry with another target got PSK %q (old %q)", got, pskB)
	}
	if out.SecurityInfo[2].AuthenticationInfo != clientCA || out.SecurityInfo[3].SelSecurityMethod != capif.PKI {
		t.Errorf("update answer %s", dump(out))
	}
	sc := e.stored("inv1")
	if sc.Version != 2 || sc.NotificationDestination != "https://new.example.com/cb" || sc.SupportedFeatures != "4" || len(sc.Entries) != 4 {
		t.Errorf("stored after update %s", dump(sc))
	}
	if sc.Entries[2].PSK != "" {
		t.Error("the PSK of an entry that left PSK was kept")
	}

	// Back to PSK on ifShared: a fresh key, never the old one.
	out, err = e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(ifEntry(ifShared, capif.PSK), entry("aef2", capif.PSK)))
	if err != nil {
		t.Fatal(err)
	}
	if got := out.SecurityInfo[0].AuthenticationInfo; got == pskShared || got == "" {
		t.Errorf("re-entering PSK gave PSK %q (old %q)", got, pskShared)
	}
	if out.SecurityInfo[1].AuthenticationInfo != pskAEF2 {
		t.Error("reordering entries lost the PSK of an unchanged target")
	}
	if out.SupportedFeatures != "" {
		t.Errorf("supportedFeatures absent from the update answered %q", out.SupportedFeatures)
	}

	// An update that fails leaves everything as it was.
	before := e.stored("inv1")
	_, err = e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK), entry("aef9", capif.PSK)))
	wantError(t, err, security.KindInvalid, security.CauseInvalidParameter, "/securityInfo/1/aefId")
	if after := e.stored("inv1"); !reflect.DeepEqual(before, after) {
		t.Errorf("a failed update changed the context:\n%s", dump(after))
	}
}

func TestUpdateMissingIsNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", standardRequest())
	wantError(t, err, security.KindNotFound, security.CauseContextNotFound)
	if e.stored("inv1") != nil {
		t.Error("update created a context")
	}
}

func TestEncodedContextLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Ten AEFs of 70 APIs with ids and names of 200 bytes: an aefId entry for each AEF
	// covers 70 targets of ≈ 450 bytes.
	var doc security.RegistryDoc
	long := func(kind string, a, i int) string {
		return kind + itoa(a) + "-" + itoa(i) + "-" + strings.Repeat("x", 190)
	}
	for a := range 10 {
		aef := "big" + itoa(a)
		doc.AEFs = append(doc.AEFs, security.AEFRecord{AefID: aef})
		for i := range 70 {
			doc.ServiceAPIs = append(doc.ServiceAPIs, capif.ServiceAPIDescription{APIID: long("id", a, i), APIName: long("name", a, i),
				AefProfiles: []capif.AefProfile{{AefID: aef}}})
		}
	}
	if err := e.svc.ImportRegistry(ctx, doc); err != nil {
		t.Fatal(err)
	}
	req := func(aefs int) *capif.ServiceSecurity {
		r := request()
		for a := range aefs {
			r.SecurityInfo = append(r.SecurityInfo, entry("big"+itoa(a), capif.OAUTH))
		}
		return r
	}
	// 10 entries, each valid, resolve to 700 targets: far over 256 KiB.
	_, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req(10))
	wantError(t, err, security.KindTooLarge, security.CauseTooLarge)
	if e.stored("inv1") != nil {
		t.Fatal("an over-large context was stored")
	}
	// Smaller ones fit.
	e.create("inv1", req(5))
	_, err = e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req(10))
	wantError(t, err, security.KindTooLarge, security.CauseTooLarge)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestGetInvokerInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req := standardRequest()
	req.SupportedFeatures = "5"
	req.SecurityInfo[2].AuthorizationInfo = "authz-shared" // ignored: the CCF answers none
	owner := e.create("inv1", req)

	tests := []struct {
		caller       string
		authn, authz bool
		want         []capif.SecurityInformation // the visible entries of owner, with info fields
	}{
		{"aef1", false, false, []capif.SecurityInformation{bare(owner, 0), bare(owner, 2)}},
		{"aef1", true, false, []capif.SecurityInformation{bare(owner, 0), with(bare(owner, 2), clientCA, "")}},
		{"aef1", false, true, []capif.SecurityInformation{bare(owner, 0), bare(owner, 2)}},
		{"aef2", true, true, []capif.SecurityInformation{with(bare(owner, 1), owner.SecurityInfo[1].AuthenticationInfo, ""), with(bare(owner, 2), clientCA, "")}},
		{"aef2", false, false, []capif.SecurityInformation{bare(owner, 1), bare(owner, 2)}},
	}
	for _, tt := range tests {
		got, err := e.svc.GetInvokerInfo(ctx, security.Caller{ID: tt.caller}, "inv1", security.InvokerInfoQuery{AuthenticationInfo: tt.authn, AuthorizationInfo: tt.authz})
		if err != nil {
			t.Fatal(err)
		}
		if got.NotificationDestination != destInv1 || got.SupportedFeatures != "5" {
			t.Errorf("%s: header fields %s", tt.caller, dump(got))
		}
		if !reflect.DeepEqual(got.SecurityInfo, tt.want) {
			t.Errorf("%s authn=%v authz=%v sees\n%s\nwant\n%s", tt.caller, tt.authn, tt.authz, dump(got.SecurityInfo), dump(tt.want))
		}
	}
	if len(owner.SecurityInfo[1].AuthenticationInfo) == 0 {
		t.Fatal("no PSK to compare")
	}
}

func bare(s *capif.ServiceSecurity, i int) capif.SecurityInformation {
	si := s.SecurityInfo[i]
	si.AuthenticationInfo, si.AuthorizationInfo = "", ""
	return si
}

func with(si capif.SecurityInformation, authn, authz string) capif.SecurityInformation {
	si.AuthenticationInfo, si.AuthorizationInfo = authn, authz
	return si
}

// The identity rules of the AEF routes: unknown caller 401, an invoker 403 (even for an unknown
// id), then the query error, then 404 when there is no context and 403 when it has no entry for
// the caller.
func TestAEFRouteAccess(t *testing.T) {
	t.Parallel()
	queryErr := decodeErr("bad flag")
	tests := []struct {
		name       string
		caller, id string
		queryErr   error
		kind       security.Kind
		cause      string
	}{
		{name: "no caller", id: "inv1", kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated},
		{name: "unknown caller", caller: "stranger", id: "inv1", kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated},
		{name: "unknown caller, bad query", caller: "stranger", id: "inv1", queryErr: queryErr, kind: security.KindUnauthenticated, cause: security.CauseUnauthenticated},
		{name: "invoker", caller: "inv1", id: "inv1", kind: security.KindForbidden, cause: security.CauseRoleNotAllowed},
		{name: "invoker on an unknown id", caller: "inv1", id: "nobody", kind: security.KindForbidden, cause: security.CauseRoleNotAllowed},
		{name: "invoker, bad query", caller: "inv2", id: "inv1", queryErr: queryErr, kind: security.KindForbidden, cause: security.CauseRoleNotAllowed},
		{name: "AEF, bad query", caller: "aef1", id: "inv1", queryErr: queryErr, kind: security.KindInvalid, cause: causeMalformed},
		{name: "AEF, bad query, no context", caller: "aef1", id: "inv2", queryErr: queryErr, kind: security.KindInvalid, cause: causeMalformed},
		{name: "AEF without entries", caller: "aef3", id: "inv1", kind: security.KindNotFound, cause: security.CauseContextNotFound},
		{name: "AEF, invoker without context", caller: "aef1", id: "inv2", kind: security.KindNotFound, cause: security.CauseContextNotFound},
		{name: "AEF without entries, invoker without context", caller: "aef3", id: "inv2", kind: security.KindNotFound, cause: security.CauseContextNotFound},
		{name: "AEF, unknown invoker", caller: "aef1", id: "nobody", kind: security.KindNotFound, cause: security.CauseContextNotFound},
		{name: "AEF, over-long invoker id", caller: "aef1", id: strings.Repeat("x", 1000), kind: security.KindNotFound, cause: security.CauseContextNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.create("inv1", standardRequest())
			before := e.stored("inv1")

			err := refused(e.svc, security.ObtainAPIInvokerInfo, tt.caller, tt.id, tt.queryErr)
			if tt.queryErr == nil {
				_, err = e.svc.GetInvokerInfo(ctx, security.Caller{ID: tt.caller}, tt.id, security.InvokerInfoQuery{AuthenticationInfo: true, AuthorizationInfo: true})
			}
			wantError(t, err, tt.kind, tt.cause)
			if tt.queryErr != nil && tt.kind == security.KindInvalid && !errors.Is(err, tt.queryErr) {
				t.Errorf("GET: %v, want the query error", err)
			}
			if tt.queryErr == nil {
				wantError(t, e.svc.RevokeAll(ctx, security.Caller{ID: tt.caller}, tt.id), tt.kind, tt.cause)
				body := &capif.SecurityNotification{APIInvokerID: tt.id, APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage}
				if tt.caller == "aef2" || tt.caller == "aef3" {
					body.APIIDs = []string{"apiC"}
				}
				wantError(t, e.svc.Revoke(ctx, security.Caller{ID: tt.caller}, tt.id, body), tt.kind, tt.cause)
			} else {
				// The revocation body error takes the place of the query error.
				err := refused(e.svc, security.RevokeAuthorization, tt.caller, tt.id, tt.queryErr)
				wantError(t, err, tt.kind, tt.cause)
			}
			if after := e.stored("inv1"); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused request changed the context:\n%s", dump(after))
			}
			if n := len(e.notifier.Sent()); n != 0 {
				t.Errorf("a refused request sent %d notifications", n)
			}
		})
	}
}
