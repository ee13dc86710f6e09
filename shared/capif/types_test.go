package capif_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

func TestIsKnownSecurityMethod(t *testing.T) {
	for _, m := range capif.KnownSecurityMethods {
		if !capif.IsKnownSecurityMethod(m) {
			t.Errorf("%q is listed but not known", m)
		}
	}
	for _, m := range []capif.SecurityMethod{"", "psk", "Pki", "OAUTH2", "TLS", " PSK"} {
		if capif.IsKnownSecurityMethod(m) {
			t.Errorf("%q is known", m)
		}
	}
	if want := []capif.SecurityMethod{"PSK", "PKI", "OAUTH"}; !reflect.DeepEqual(capif.KnownSecurityMethods, want) {
		t.Errorf("KnownSecurityMethods = %v, want the spec's order %v", capif.KnownSecurityMethods, want)
	}
}

// The revocation causes of Rel-18 and Rel-19 are known by their wire names.
func TestKnownCauses(t *testing.T) {
	want := []capif.Cause{"OVERLIMIT_USAGE", "UNEXPECTED_REASON", "AUTHORIZATION_ISSUE", "OTHER_REASON"}
	if !reflect.DeepEqual(capif.KnownCauses, want) {
		t.Errorf("KnownCauses = %v, want %v", capif.KnownCauses, want)
	}
}

// The wire names are the 3GPP ones; optional members are omitted when empty, mandatory ones never.
func TestWireForm(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"minimal ServiceSecurity", capif.ServiceSecurity{NotificationDestination: "https://x"},
			`{"securityInfo":null,"notificationDestination":"https://x"}`},
		{"SecurityInformation keeps prefSecurityMethods", capif.SecurityInformation{AefID: "aef1"},
			`{"aefId":"aef1","prefSecurityMethods":null}`},
		{"full SecurityInformation", capif.SecurityInformation{
			InterfaceDetails: &capif.InterfaceDescription{Ipv4Addr: "192.0.2.1", Port: new(0), SecurityMethods: []capif.SecurityMethod{"PKI"}},
			APIID:            "api1", PrefSecurityMethods: []capif.SecurityMethod{"PKI"}, SelSecurityMethod: "PKI",
			AuthenticationInfo: "a", AuthorizationInfo: "z", AuthorizationFlow: []string{"CLIENT_CREDENTIALS_FLOW"}},
			`{"interfaceDetails":{"ipv4Addr":"192.0.2.1","port":0,"securityMethods":["PKI"]},"apiId":"api1","prefSecurityMethods":["PKI"],"selSecurityMethod":"PKI","authenticationInfo":"a","authorizationInfo":"z","authorizationFlow":["CLIENT_CREDENTIALS_FLOW"]}`},
		{"SecurityNotification", capif.SecurityNotification{APIInvokerID: "inv1", APIIDs: []string{"a"}, Cause: capif.UnexpectedReason},
			`{"apiInvokerId":"inv1","apiIds":["a"],"cause":"UNEXPECTED_REASON"}`},
		{"Rel-19 SecurityNotification", capif.SecurityNotification{APIInvokerID: "inv1", APIIDs: []string{"a"}, Cause: capif.OtherReason, AccessToken: "h.p.s"},
			`{"apiInvokerId":"inv1","apiIds":["a"],"cause":"OTHER_REASON","accessToken":"h.p.s"}`},
		{"Rel-19 SecurityInformation", capif.SecurityInformation{AefID: "aef1", PrefSecurityMethods: []capif.SecurityMethod{"OAUTH"},
			GrantType: []capif.OAuthGrantType{capif.GrantAuthorizationCodeWithPKCE, capif.GrantClientCredentials}},
			`{"aefId":"aef1","prefSecurityMethods":["OAUTH"],"grantType":["AUTHORIZATION_CODE_WITH_PKCE","CLIENT_CREDENTIALS"]}`},
		{"AccessTokenRsp", capif.AccessTokenRsp{AccessToken: "t", TokenType: "Bearer", ExpiresIn: 0},
			`{"access_token":"t","token_type":"Bearer","expires_in":0}`},
		{"AccessTokenErr", capif.AccessTokenErr{Error: capif.InvalidScope},
			`{"error":"invalid_scope"}`},
		{"ProblemDetails", capif.ProblemDetails{Status: 400, Cause: "C", InvalidParams: []capif.InvalidParam{{Param: "/a"}}},
			`{"status":400,"cause":"C","invalidParams":[{"param":"/a"}]}`},
		{"TestNotification", capif.TestNotification{Subscription: "https://ccf/x"}, `{"subscription":"https://ccf/x"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, b, tt.want)
		}
	}
}

// Open enumerations parse any string; unknown members of the 3GPP schemas are ignored.
func TestParsesOpenEnumsAndExtensions(t *testing.T) {
	var s capif.ServiceSecurity
	in := `{"securityInfo":[{"aefId":"a","prefSecurityMethods":["FUTURE","PSK"],"vendorExt":{"x":1}}],"notificationDestination":"https://x","websockNotifConfig":{"requestWebsocketUri":true},"supportedFeatures":"0F","more":1}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if got := s.SecurityInfo[0].PrefSecurityMethods; !reflect.DeepEqual(got, []capif.SecurityMethod{"FUTURE", "PSK"}) {
		t.Errorf("prefSecurityMethods %v", got)
	}
	if s.WebsockNotifConfig == nil || s.WebsockNotifConfig.RequestWebsocketURI == nil || !*s.WebsockNotifConfig.RequestWebsocketURI || s.SupportedFeatures != "0F" {
		t.Errorf("parsed %+v", s)
	}
	var n capif.SecurityNotification
	if err := json.Unmarshal([]byte(`{"apiInvokerId":"i","apiIds":["a"],"cause":"SOME_FUTURE_CAUSE"}`), &n); err != nil || n.Cause != "SOME_FUTURE_CAUSE" {
		t.Errorf("cause %q, %v", n.Cause, err)
	}
	var d capif.ServiceAPIDescription
	if err := json.Unmarshal([]byte(`{"apiName":"n","apiId":"i","aefProfiles":[{"aefId":"a","versions":[{"apiVersion":"v1"}],"domainName":"d.example.com","protocol":"HTTP_1_1"}]}`), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.AefProfiles) != 1 || d.AefProfiles[0].DomainName != "d.example.com" {
		t.Errorf("service API %+v", d)
	}
}
