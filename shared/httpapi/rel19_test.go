package httpapi

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

// A Rel-19 client's token request: resOwnerId in any of its encodings and redirect_uri are
// accepted and ignored; the authorization code grant stays unsupported.
func TestTokenRel19Forms(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	const formType = "application/x-www-form-urlencoded"
	base := "grant_type=client_credentials&client_id=inv1&client_secret=" + url.QueryEscape(inv1Secret)
	for name, extra := range map[string]string{
		"resOwnerId as a string (Rel-18)":  "&resOwnerId=ue-1",
		"resOwnerId as JSON text (Rel-19)": "&resOwnerId=" + url.QueryEscape(`{"gpsi":"msisdn-491701234567"}`),
		"resOwnerId[gpsi] (Rel-19, deep)":  "&" + url.QueryEscape("resOwnerId[gpsi]") + "=msisdn-491701234567",
		"resOwnerId not even JSON":         "&resOwnerId=" + url.QueryEscape(`{"gpsi":`),
		"redirect_uri (Rel-19)":            "&redirect_uri=" + url.QueryEscape("https://inv.example.com/cb"),
		"authCode with client_credentials": "&authCode=c0de",
		"everything of Rel-19 at once":     "&redirect_uri=x&" + url.QueryEscape("resOwnerId[gpsi]") + "=msisdn-1",
	} {
		w := s.do(http.MethodPost, Base+"/securities/inv1/token", "inv1", formType, base+extra)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"access_token"`) {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	for _, body := range []string{
		"grant_type=authorization_code&client_id=inv1&authCode=c0de&redirect_uri=" + url.QueryEscape("https://inv.example.com/cb"),
		"grant_type=authorization_code&client_id=inv1&client_secret=" + url.QueryEscape(inv1Secret) + "&authCode=c0de",
	} {
		oauthErr(t, s.do(http.MethodPost, Base+"/securities/inv1/token", "inv1", formType, body), http.StatusBadRequest, capif.UnsupportedGrantType)
	}
}

// POST …/delete with a Rel-19 body: the cause and the revoked accessToken reach the invoker's
// notification unchanged, and the access log does not show the token.
func TestRevokeRel19Body(t *testing.T) {
	s := newServer(t, nil)
	s.mustCreate("inv1")
	const token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJpbnYxIn0.cmV2b2tlZC10b2tlbg"
	w := s.do(http.MethodPost, invokers+"inv1/delete", "aef1", "application/json",
		`{"apiInvokerId":"inv1","apiIds":["apiA"],"cause":"AUTHORIZATION_ISSUE","accessToken":"`+token+`"}`)
	if w.Code != http.StatusNoContent {
		t.Fatalf("POST …/delete: %d %s", w.Code, w.Body)
	}
	want := capif.SecurityNotification{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiA"}, Cause: capif.AuthorizationIssue, AccessToken: token}
	if len(s.notifier.Sent()) != 1 || !reflect.DeepEqual(s.notifier.Sent()[0].Body, want) {
		t.Errorf("notifications %+v, want %+v", bodies(s.notifier.Sent()), want)
	}
	if strings.Contains(s.logs.String(), token) {
		t.Errorf("the log holds the access token: %s", s.logs)
	}
}
