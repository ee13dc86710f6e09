package security_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// Rel-18's authorizationFlow and Rel-19's grantType are stored and echoed as sent, in every
// view and across an update, and neither is derived from the other.
func TestAuthorizationFlowAndGrantTypeEchoed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rel18 := entry("aef1", capif.OAUTH)
	rel18.AuthorizationFlow = []capif.AuthorizationFlow{capif.AuthorizationCodeFlow, "SOME_FUTURE_FLOW"}
	rel19 := entry("aef2", capif.PSK)
	rel19.GrantType = []capif.OAuthGrantType{capif.GrantAuthorizationCodeWithPKCE, capif.GrantClientCredentials, "SOME_FUTURE_GRANT"}
	neither := ifEntry(ifShared, capif.PKI)
	both := neither
	both.AuthorizationFlow = []capif.AuthorizationFlow{capif.ClientCredentialsFlow}
	both.GrantType = []capif.OAuthGrantType{capif.GrantAuthorizationCode}

	type flows struct{ flow, grant []string }
	check := func(what string, got []capif.SecurityInformation, want []flows) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
		}
		for i, w := range want {
			if !reflect.DeepEqual(got[i].AuthorizationFlow, w.flow) || !reflect.DeepEqual(got[i].GrantType, w.grant) {
				t.Errorf("%s entry %d: authorizationFlow %q grantType %q, want %q %q", what, i, got[i].AuthorizationFlow, got[i].GrantType, w.flow, w.grant)
			}
		}
	}
	out := e.create("inv1", request(rel18, rel19, neither))
	check("create", out.SecurityInfo, []flows{{rel18.AuthorizationFlow, nil}, {nil, rel19.GrantType}, {nil, nil}})
	stored := e.stored("inv1")
	if !reflect.DeepEqual(stored.Entries[1].GrantType, rel19.GrantType) || stored.Entries[1].AuthorizationFlow != nil {
		t.Errorf("stored %s", dump(stored.Entries[1]))
	}
	got, err := e.svc.GetInvokerInfo(ctx, security.Caller{ID: "aef2"}, "inv1", security.InvokerInfoQuery{})
	if err != nil {
		t.Fatal(err)
	}
	check("AEF view", got.SecurityInfo, []flows{{nil, rel19.GrantType}, {nil, nil}})

	out, err = e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef1", capif.OAUTH), both))
	if err != nil {
		t.Fatal(err)
	}
	check("update", out.SecurityInfo, []flows{{nil, nil}, {both.AuthorizationFlow, both.GrantType}})
}

func TestAuthorizationFlowAndGrantTypeValidated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := entry("aef1", capif.OAUTH)
	bad.GrantType = []capif.OAuthGrantType{}
	bad2 := entry("aef2", capif.PSK)
	bad2.AuthorizationFlow = []capif.AuthorizationFlow{capif.ClientCredentialsFlow, ""}
	_, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(bad, bad2))
	wantError(t, err, security.KindInvalid, security.CauseInvalidParameter, "/securityInfo/0/grantType", "/securityInfo/1/authorizationFlow/1")
	if e.stored("inv1") != nil {
		t.Error("an invalid request created a context")
	}
}

// The Rel-19 causes and the revoked accessToken of POST …/delete reach the invoker unchanged;
// the token never reaches a log line, even when the delivery fails.
func TestRevokePassesAccessTokenOn(t *testing.T) {
	t.Parallel()
	const token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJpbnYxIn0.c2lnbmF0dXJl"
	for _, cause := range []capif.Cause{capif.AuthorizationIssue, capif.OtherReason} {
		t.Run(cause, func(t *testing.T) {
			e := newEnv(t)
			e.create("inv1", standardRequest())
			e.notifier.Err = errors.New("listener down")
			n := revocation("apiC")
			n.Cause, n.AccessToken = cause, token
			if err := e.svc.Revoke(ctx, security.Caller{ID: "aef2"}, "inv1", n); err != nil {
				t.Fatal(err)
			}
			want := capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC"}, Cause: cause, AccessToken: token}
			if got := e.notifier.Revocations(t); !reflect.DeepEqual(got, []capif.SecurityNotification{want}) {
				t.Errorf("notifications %s, want %s", dump(got), dump(want))
			}
			// Undelivered: the outbox keeps it, token included, for the retrying delivery.
			if p := e.pending(); len(p) != 1 || !reflect.DeepEqual(p[0].Notification, want) {
				t.Errorf("outbox %s", dump(p))
			}
			if !strings.Contains(e.logs.String(), "not delivered") {
				t.Errorf("the failed delivery is not logged: %s", e.logs)
			}
			if strings.Contains(e.logs.String(), token) || strings.Contains(e.logs.String(), "c2lnbmF0dXJl") {
				t.Errorf("the access token is logged: %s", e.logs)
			}
		})
	}
	// DELETE carries no token.
	e := newEnv(t)
	e.create("inv1", standardRequest())
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	if got := e.notifier.Revocations(t); len(got) != 1 || got[0].AccessToken != "" {
		t.Errorf("DELETE notification %s", dump(got))
	}
}
