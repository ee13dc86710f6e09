package main

// Rel-19 clients (TS 29.222 V19.5.0) served by the same endpoints as Rel-18 ones; the harness
// holds every response to both documents.

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

// testRel19SecurityInfo: Rel-18's authorizationFlow and Rel-19's grantType are stored and echoed
// as sent, to the owner and the AEF, and never translated into each other; both are open
// enumerations, with minItems 1.
func testRel19SecurityInfo(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner := r.as(t, inv)
	rel18 := aefEntry(aefA, apiA2, "OAUTH")
	rel18.AuthorizationFlow = []capif.AuthorizationFlow{capif.ClientCredentialsFlow, capif.AuthorizationCodeFlowWithPKCE}
	rel19 := aefEntry(aefB, apiB2, "OAUTH")
	rel19.GrantType = []capif.OAuthGrantType{capif.GrantClientCredentials, capif.GrantAuthorizationCode, "SOME_FUTURE_GRANT"}
	both := aefEntry(aefC, apiC1, "OAUTH")
	both.AuthorizationFlow = []capif.AuthorizationFlow{"SOME_FUTURE_FLOW"}
	both.GrantType = []capif.OAuthGrantType{capif.GrantAuthorizationCodeWithPKCE}
	sent := []capif.SecurityInformation{rel18, rel19, both}

	echoed := func(what string, got []capif.SecurityInformation, want ...capif.SecurityInformation) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
		}
		for i := range want {
			if !slices.Equal(got[i].AuthorizationFlow, want[i].AuthorizationFlow) || !slices.Equal(got[i].GrantType, want[i].GrantType) ||
				(want[i].AuthorizationFlow == nil) != (got[i].AuthorizationFlow == nil) || (want[i].GrantType == nil) != (got[i].GrantType == nil) {
				t.Errorf("%s entry %d: authorizationFlow %q grantType %q, want %q %q", what, i, got[i].AuthorizationFlow, got[i].GrantType, want[i].AuthorizationFlow, want[i].GrantType)
			}
		}
	}
	resp := owner.create(inv, serviceSecurity(someDest, sent...))
	wantStatus(t, resp, http.StatusCreated)
	echoed("create", decode[capif.ServiceSecurity](t, resp).SecurityInfo, sent...)
	resp = r.as(t, aefB).get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	echoed("aef-b's view", decode[capif.ServiceSecurity](t, resp).SecurityInfo, rel19)
	resp = owner.update(inv, serviceSecurity(someDest, both, aefEntry(aefA, apiA2, "OAUTH")))
	wantStatus(t, resp, http.StatusOK)
	echoed("update", decode[capif.ServiceSecurity](t, resp).SecurityInfo, both, aefEntry(aefA, apiA2, "OAUTH"))
	resp = r.as(t, aefA).get(inv, "authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	echoed("aef-a's view after the update", decode[capif.ServiceSecurity](t, resp).SecurityInfo, aefEntry(aefA, apiA2, "OAUTH"))

	// Empty arrays and empty values are refused, naming the member; nothing changes.
	raw := func(entry string) []byte {
		return []byte(`{"notificationDestination":"` + someDest + `","securityInfo":[` + entry + `]}`)
	}
	wantInvalid(t, owner.send(http.MethodPost, invPath(inv)+"/update", "application/json",
		raw(`{"aefId":"aef-a","prefSecurityMethods":["OAUTH"],"grantType":[]}`)), "/securityInfo/0/grantType")
	wantInvalid(t, owner.send(http.MethodPost, invPath(inv)+"/update", "application/json",
		raw(`{"aefId":"aef-a","prefSecurityMethods":["OAUTH"],"authorizationFlow":[]}`)), "/securityInfo/0/authorizationFlow")
	blank := aefEntry(aefA, apiA2, "OAUTH")
	blank.AuthorizationFlow = []capif.AuthorizationFlow{capif.ClientCredentialsFlow, ""}
	wantInvalid(t, owner.update(inv, serviceSecurity(someDest, blank)), "/securityInfo/0/authorizationFlow/1")
	wantInvalid(t, owner.send(http.MethodPost, invPath(inv)+"/update", "application/json",
		raw(`{"aefId":"aef-a","prefSecurityMethods":["OAUTH"],"grantType":"CLIENT_CREDENTIALS"}`)), "/securityInfo/0/grantType")
	wantInvalid(t, owner.send(http.MethodPost, invPath(inv)+"/update", "application/json",
		raw(`{"aefId":"aef-a","prefSecurityMethods":["OAUTH"],"grantType":[7]}`)), "/securityInfo/0/grantType/0")
	resp = r.as(t, aefC).get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	echoed("aef-c's view after refusals", decode[capif.ServiceSecurity](t, resp).SecurityInfo, both)
}

// testRel19TokenRequest: resOwnerId in each encoding and redirect_uri are accepted and ignored;
// grant_type=authorization_code stays unsupported_grant_type.
func testRel19TokenRequest(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	c := r.as(t, inv)
	plain := scopeOf(t, c, inv)
	for name, extra := range map[string][]string{
		"resOwnerId as a string":    {"resOwnerId", "ue-1"},
		"resOwnerId as JSON text":   {"resOwnerId", `{"gpsi":"msisdn-491701234567"}`},
		"resOwnerId[gpsi]":          {"resOwnerId[gpsi]", "msisdn-491701234567"},
		"redirect_uri":              {"redirect_uri", "https://invoker.example.com/cb"},
		"both Rel-19 forms at once": {"resOwnerId[gpsi]", "msisdn-1", "redirect_uri", "https://invoker.example.com/cb"},
	} {
		resp := c.tokenReq(inv, grant(inv, extra...))
		if resp.status != http.StatusOK {
			t.Errorf("%s: %d %s", name, resp.status, resp.body)
			continue
		}
		if got := decode[capif.AccessTokenRsp](t, resp).Scope; got != plain {
			t.Errorf("%s: scope %q, want %q as without it", name, got, plain)
		}
	}
	for _, f := range []url.Values{
		form("grant_type", "authorization_code", "client_id", inv, "authCode", "c0de", "redirect_uri", "https://invoker.example.com/cb"),
		form("grant_type", "authorization_code", "client_id", inv, "resOwnerId", `{"gpsi":"msisdn-1"}`),
	} {
		wantTokenErr(t, c.tokenReq(inv, f), http.StatusBadRequest, capif.UnsupportedGrantType)
	}
}

// testRel19Revocation: the Rel-19 causes are served, and the revoked accessToken an AEF names in
// POST …/delete reaches the invoker unchanged (the log check makes sure no log line holds it).
func testRel19Revocation(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner, a := r.as(t, inv), r.as(t, aefA)
	snk := newSink(t, http.StatusNoContent)
	wantStatus(t, owner.create(inv, serviceSecurity(snk.url("/revoked"), aefEntry(aefA, apiA1, "OAUTH"), aefEntry(aefA, apiA2, "OAUTH"))), http.StatusCreated)
	resp := owner.tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	token := decode[capif.AccessTokenRsp](t, resp).AccessToken

	n := capif.SecurityNotification{APIInvokerID: inv, AefID: aefA, APIIDs: []string{apiA1}, Cause: capif.AuthorizationIssue, AccessToken: token}
	wantStatus(t, a.revoke(inv, n), http.StatusNoContent)
	wantNotification(t, r, snk, n)
	n = capif.SecurityNotification{APIInvokerID: inv, APIIDs: []string{apiA2}, Cause: capif.OtherReason}
	wantStatus(t, a.revoke(inv, n), http.StatusNoContent)
	n.AefID = aefA
	wantNotification(t, r, snk, n)
	wantProblem(t, a.get(inv, ""), http.StatusNotFound)
}

// The harness holds responses to both releases' documents: Rel-18 (Security API 1.3.x) and
// Rel-19 (1.4.0, with OAuthGrantType).
func TestContractReleases(t *testing.T) {
	rs := loadContract(t).releases()
	if len(rs) != 2 || rs[0].release != "Rel-18" || rs[1].release != "Rel-19" {
		t.Fatalf("releases %v", rs)
	}
	if v := rs[1].doc.Info.Version; v != "1.4.0" {
		t.Errorf("Rel-19 document version %q", v)
	}
	if rs[0].doc.Components.Schemas["OAuthGrantType"] != nil || rs[1].doc.Components.Schemas["OAuthGrantType"] == nil {
		t.Error("OAuthGrantType should be in the Rel-19 document only")
	}
	for _, c := range rs {
		if c.route(http.MethodPost, "/capif-security/v1/trustedInvokers/x/delete") == nil {
			t.Errorf("%s: no route for POST …/delete", c.release)
		}
	}
}
