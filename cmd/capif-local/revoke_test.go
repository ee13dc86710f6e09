package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

// wantNotification checks that exactly this SecurityNotification had arrived at the sink when
// the 204 came back, and that it matches the 3GPP schema.
func wantNotification(t testing.TB, r *runner, snk *sink, want capif.SecurityNotification) {
	t.Helper()
	n := snk.arrived(t)
	var v any
	if err := json.Unmarshal(n.body, &v); err != nil {
		t.Fatalf("notification is not JSON: %s", n.body)
	}
	for _, c := range r.contract.releases() {
		if err := c.doc.Components.Schemas["SecurityNotification"].Value.VisitJSON(v); err != nil {
			t.Errorf("notification does not match the %s SecurityNotification: %v", c.release, err)
		}
	}
	var got capif.SecurityNotification
	if err := json.Unmarshal(n.body, &got); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, got, want) {
		t.Errorf("notification %s, want %+v", n.body, want)
	}
	snk.quiet(t)
}

// scopeOf obtains a token without scope and returns the granted scope ("" when refused).
func scopeOf(t testing.TB, c *client, inv string) string {
	t.Helper()
	resp := c.tokenReq(inv, url.Values{"grant_type": {"client_credentials"}, "client_id": {inv}})
	if resp.status != http.StatusOK {
		return ""
	}
	return decode[capif.AccessTokenRsp](t, resp).Scope
}

// testRevocation: POST …/delete and DELETE, in the order of their checks, with the notification
// owed to the invoker delivered before the 204.
func testRevocation(t *testing.T, r *runner) {
	inv, other := r.freshInvoker(t), r.freshInvoker(t)
	owner, a, b := r.as(t, inv), r.as(t, aefA), r.as(t, aefB)
	snk := newSink(t, http.StatusNoContent)
	wantStatus(t, owner.create(inv, serviceSecurity(snk.url("/revoked"),
		aefEntry(aefA, apiA1, "OAUTH"),
		aefEntry(aefA, apiA2, "OAUTH"),
		aefEntry(aefB, "", "OAUTH"), // beta-one and beta-two
		aefEntry(aefB, apiB1, "PSK"),
	)), http.StatusCreated)
	before := "3gpp#aef-a:alpha-one,alpha-two;aef-b:beta-one,beta-two"
	if got := scopeOf(t, owner, inv); got != before {
		t.Fatalf("scope %q, want %q", got, before)
	}
	n := func(id, aef string, cause string, apis ...string) capif.SecurityNotification {
		return capif.SecurityNotification{APIInvokerID: id, AefID: aef, APIIDs: apis, Cause: cause}
	}

	// Refusals, in order; none revokes anything or notifies.
	wantInvalid(t, a.revoke(inv, n(other, aefA, capif.OverlimitUsage, apiA1)), "/apiInvokerId")
	wantInvalid(t, a.revoke(inv, n("", aefA, capif.OverlimitUsage, apiA1)), "/apiInvokerId")
	wantInvalid(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage)), "/apiIds")
	wantInvalid(t, a.revoke(inv, n(inv, aefA, "", apiA1)), "/cause")
	wantProblem(t, a.revoke(inv, n(inv, aefB, capif.OverlimitUsage, apiB1)), http.StatusForbidden)        // aefId ≠ caller
	wantProblem(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, apiB1)), http.StatusForbidden)        // not published by aef-a
	wantProblem(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, apiA1, apiB1)), http.StatusForbidden) // one of them: nothing revoked
	wantProblem(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, "api-nowhere")), http.StatusForbidden)
	wantProblem(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, apiA3)), http.StatusNotFound) // aef-a's, not in the context
	wantProblem(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, apiA1, apiA3)), http.StatusNotFound)
	snk.quiet(t)
	if got := scopeOf(t, owner, inv); got != before {
		t.Fatalf("refused revocations changed the scope to %q", got)
	}

	// aef-a revokes alpha-one: its entry goes, the notification names exactly api-a1.
	wantStatus(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, apiA1)), http.StatusNoContent)
	wantNotification(t, r, snk, n(inv, aefA, capif.OverlimitUsage, apiA1))
	resp := a.get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	if v := decode[capif.ServiceSecurity](t, resp).SecurityInfo; len(v) != 1 || v[0].APIID != apiA2 {
		t.Errorf("aef-a sees %+v after revoking api-a1", v)
	}

	// aef-b revokes beta-one (no aefId in the body): the PSK entry goes, the aefId entry keeps
	// beta-two; the notification names api-b1 once.
	wantStatus(t, b.revoke(inv, n(inv, "", "SOME_FUTURE_CAUSE", apiB1)), http.StatusNoContent)
	wantNotification(t, r, snk, n(inv, aefB, "SOME_FUTURE_CAUSE", apiB1))
	resp = b.get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	if v := decode[capif.ServiceSecurity](t, resp).SecurityInfo; len(v) != 1 || v[0].AefID != aefB || v[0].APIID != "" {
		t.Errorf("aef-b sees %+v after revoking api-b1", v)
	}
	if got, want := scopeOf(t, owner, inv), "3gpp#aef-a:alpha-two;aef-b:beta-two"; got != want {
		t.Errorf("scope after revocations %q, want %q", got, want)
	}
	resp = owner.tokenReq(inv, url.Values{"grant_type": {"client_credentials"}, "client_id": {inv}, "scope": {"3gpp#aef-a:alpha-one"}})
	if e := wantTokenErr(t, resp, http.StatusBadRequest, capif.InvalidScope); !strings.Contains(e.ErrorDescription, `"alpha-one"`) {
		t.Errorf("revoked scope: description %q does not name alpha-one", e.ErrorDescription)
	}

	// aef-b's DELETE: what is left of aef-b, cause UNEXPECTED_REASON; then it has no entries.
	wantStatus(t, b.revokeAll(inv), http.StatusNoContent)
	wantNotification(t, r, snk, n(inv, aefB, capif.UnexpectedReason, apiB2))
	wantProblem(t, b.get(inv, ""), http.StatusNotFound)
	wantProblem(t, b.revokeAll(inv), http.StatusNotFound)
	snk.quiet(t)

	// aef-a's DELETE empties the context, which is deleted.
	wantStatus(t, a.revokeAll(inv), http.StatusNoContent)
	wantNotification(t, r, snk, n(inv, aefA, capif.UnexpectedReason, apiA2))
	wantProblem(t, a.get(inv, ""), http.StatusNotFound)
	wantProblem(t, a.revokeAll(inv), http.StatusNotFound)
	wantProblem(t, a.revoke(inv, n(inv, aefA, capif.OverlimitUsage, apiA2)), http.StatusNotFound)
	wantProblem(t, owner.update(inv, serviceSecurity(someDest, aefEntry(aefA, apiA2, "OAUTH"))), http.StatusNotFound)
	wantTokenErr(t, owner.tokenReq(inv, url.Values{"grant_type": {"client_credentials"}, "client_id": {inv}}), http.StatusBadRequest, capif.UnauthorizedClient)
	snk.quiet(t)

	// A new context can be created again.
	wantStatus(t, owner.create(inv, serviceSecurity(snk.url("/revoked"), aefEntry(aefA, "", "OAUTH"))), http.StatusCreated)
	// DELETE of an aefId-only entry notifies every API it covered, sorted.
	wantStatus(t, a.revokeAll(inv), http.StatusNoContent)
	got := n(inv, aefA, capif.UnexpectedReason, apiA1, apiA2, apiA3)
	if !slices.IsSorted(got.APIIDs) {
		t.Fatal("test data not sorted")
	}
	wantNotification(t, r, snk, got)
}

// testRevocationFailingListener: a destination that fails or cannot be reached does not change
// the 204, and the revocation still takes effect.
func testRevocationFailingListener(t *testing.T, r *runner) {
	failing := newSink(t, http.StatusInternalServerError)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/gone"
	closed.Close()
	a := r.as(t, aefA)
	for _, dest := range []string{failing.url("/fails"), closedURL} {
		inv := r.freshInvoker(t)
		wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(dest, aefEntry(aefA, apiA1, "OAUTH"), aefEntry(aefA, apiA3, "PKI"))), http.StatusCreated)
		wantStatus(t, a.revoke(inv, capif.SecurityNotification{APIInvokerID: inv, APIIDs: []string{apiA1}, Cause: capif.OverlimitUsage}), http.StatusNoContent)
		wantStatus(t, a.revokeAll(inv), http.StatusNoContent)
		wantProblem(t, a.get(inv, ""), http.StatusNotFound)
	}
	// The failing listener was tried twice (once per revocation).
	failing.arrived(t)
	failing.arrived(t)
	failing.quiet(t)
}
