package security_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

func intp(i int) *int { return &i }

func validRequest() *capif.ServiceSecurity {
	return &capif.ServiceSecurity{
		NotificationDestination: "https://invoker.example.com/notify",
		SecurityInfo: []capif.SecurityInformation{
			{AefID: "aef1", PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH}},
			{InterfaceDetails: &capif.InterfaceDescription{Fqdn: "a.example.com", Port: intp(443)}, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI}},
		},
	}
}

func params(ps []capif.InvalidParam) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Param)
	}
	slices.Sort(out)
	return out
}

func TestValidateServiceSecurity(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("x", n) }
	entries := func(n int) []capif.SecurityInformation {
		out := make([]capif.SecurityInformation, n)
		for i := range out {
			out[i] = capif.SecurityInformation{AefID: "aef1", PrefSecurityMethods: []capif.SecurityMethod{capif.PSK}}
		}
		return out
	}
	tests := []struct {
		name   string
		mutate func(s *capif.ServiceSecurity)
		want   []string // JSON pointers, sorted
	}{
		{"valid", func(s *capif.ServiceSecurity) {}, nil},
		{"http destination", func(s *capif.ServiceSecurity) { s.NotificationDestination = "http://10.1.2.3:8080/cb?x=1" }, nil},
		{"upper-case scheme", func(s *capif.ServiceSecurity) { s.NotificationDestination = "HTTPS://invoker.example.com/" }, nil},
		{"destination at 2 KiB", func(s *capif.ServiceSecurity) {
			s.NotificationDestination = "https://h.example.com/" + long(2048-len("https://h.example.com/"))
		}, nil},
		{"destination over 2 KiB", func(s *capif.ServiceSecurity) {
			s.NotificationDestination = "https://h.example.com/" + long(2049-len("https://h.example.com/"))
		}, []string{"/notificationDestination"}},
		{"destination missing", func(s *capif.ServiceSecurity) { s.NotificationDestination = "" }, []string{"/notificationDestination"}},
		{"destination relative", func(s *capif.ServiceSecurity) { s.NotificationDestination = "/notify" }, []string{"/notificationDestination"}},
		{"destination ftp", func(s *capif.ServiceSecurity) { s.NotificationDestination = "ftp://h.example.com/" }, []string{"/notificationDestination"}},
		{"destination opaque", func(s *capif.ServiceSecurity) { s.NotificationDestination = "http:h.example.com" }, []string{"/notificationDestination"}},
		{"destination without host", func(s *capif.ServiceSecurity) { s.NotificationDestination = "https:///notify" }, []string{"/notificationDestination"}},
		{"destination with port only", func(s *capif.ServiceSecurity) { s.NotificationDestination = "https://:443/notify" }, []string{"/notificationDestination"}},
		{"destination with userinfo", func(s *capif.ServiceSecurity) { s.NotificationDestination = "https://user:pw@h.example.com/" }, []string{"/notificationDestination"}},
		{"destination with user only", func(s *capif.ServiceSecurity) { s.NotificationDestination = "https://user@h.example.com/" }, []string{"/notificationDestination"}},
		{"destination unparsable", func(s *capif.ServiceSecurity) { s.NotificationDestination = "https://h.example.com/%zz" }, []string{"/notificationDestination"}},
		{"supportedFeatures hex", func(s *capif.ServiceSecurity) { s.SupportedFeatures = "0aF" }, nil},
		{"supportedFeatures not hex", func(s *capif.ServiceSecurity) { s.SupportedFeatures = "0x5" }, []string{"/supportedFeatures"}},
		{"securityInfo empty", func(s *capif.ServiceSecurity) { s.SecurityInfo = nil }, []string{"/securityInfo"}},
		{"securityInfo 100 entries", func(s *capif.ServiceSecurity) { s.SecurityInfo = entries(100) }, nil},
		{"securityInfo 101 entries", func(s *capif.ServiceSecurity) { s.SecurityInfo = entries(101) }, []string{"/securityInfo"}},
		{"both aefId and interfaceDetails", func(s *capif.ServiceSecurity) { s.SecurityInfo[1].AefID = "aef1" }, []string{"/securityInfo/1"}},
		{"neither aefId nor interfaceDetails", func(s *capif.ServiceSecurity) { s.SecurityInfo[0].AefID = "" }, []string{"/securityInfo/0"}},
		{"aefId too long", func(s *capif.ServiceSecurity) { s.SecurityInfo[0].AefID = long(257) }, []string{"/securityInfo/0/aefId"}},
		{"apiId too long", func(s *capif.ServiceSecurity) { s.SecurityInfo[0].APIID = long(257) }, []string{"/securityInfo/0/apiId"}},
		{"prefSecurityMethods empty", func(s *capif.ServiceSecurity) { s.SecurityInfo[1].PrefSecurityMethods = nil }, []string{"/securityInfo/1/prefSecurityMethods"}},
		{"prefSecurityMethods unknown only", func(s *capif.ServiceSecurity) {
			s.SecurityInfo[0].PrefSecurityMethods = []capif.SecurityMethod{"TLS13", "psk"}
		}, []string{"/securityInfo/0/prefSecurityMethods"}},
		{"prefSecurityMethods unknown and known", func(s *capif.ServiceSecurity) {
			s.SecurityInfo[0].PrefSecurityMethods = []capif.SecurityMethod{"TLS13", capif.PSK}
		}, nil},
		{"prefSecurityMethods too many", func(s *capif.ServiceSecurity) {
			s.SecurityInfo[0].PrefSecurityMethods = slices.Repeat([]capif.SecurityMethod{capif.PSK}, 17)
		}, []string{"/securityInfo/0/prefSecurityMethods"}},
		{"authenticationInfo 4 KiB", func(s *capif.ServiceSecurity) { s.SecurityInfo[0].AuthenticationInfo = long(4096) }, nil},
		{"authenticationInfo over 4 KiB", func(s *capif.ServiceSecurity) { s.SecurityInfo[0].AuthenticationInfo = long(4097) }, []string{"/securityInfo/0/authenticationInfo"}},
		{"authorizationInfo over 4 KiB", func(s *capif.ServiceSecurity) { s.SecurityInfo[1].AuthorizationInfo = long(4097) }, []string{"/securityInfo/1/authorizationInfo"}},
		{"Rel-18 authorizationFlow and Rel-19 grantType, known and unknown values", func(s *capif.ServiceSecurity) {
			s.SecurityInfo[0].AuthorizationFlow = []capif.AuthorizationFlow{capif.ClientCredentialsFlow, capif.AuthorizationCodeFlowWithPKCE, "SOME_FUTURE_FLOW"}
			s.SecurityInfo[0].GrantType = []capif.OAuthGrantType{capif.GrantClientCredentials, capif.GrantAuthorizationCode, "SOME_FUTURE_GRANT"}
			s.SecurityInfo[1].GrantType = slices.Repeat([]capif.OAuthGrantType{capif.GrantAuthorizationCodeWithPKCE}, security.MaxFlows)
		}, nil},
		{"grantType present but empty", func(s *capif.ServiceSecurity) { s.SecurityInfo[0].GrantType = []capif.OAuthGrantType{} }, []string{"/securityInfo/0/grantType"}},
		{"authorizationFlow present but empty", func(s *capif.ServiceSecurity) { s.SecurityInfo[1].AuthorizationFlow = []capif.AuthorizationFlow{} }, []string{"/securityInfo/1/authorizationFlow"}},
		{"grantType too many", func(s *capif.ServiceSecurity) {
			s.SecurityInfo[0].GrantType = slices.Repeat([]capif.OAuthGrantType{capif.GrantClientCredentials}, security.MaxFlows+1)
		}, []string{"/securityInfo/0/grantType"}},
		{"grantType and authorizationFlow with empty or long values", func(s *capif.ServiceSecurity) {
			s.SecurityInfo[0].GrantType = []capif.OAuthGrantType{capif.GrantClientCredentials, ""}
			s.SecurityInfo[1].AuthorizationFlow = []capif.AuthorizationFlow{long(257), capif.AuthorizationCodeFlow}
		}, []string{"/securityInfo/0/grantType/1", "/securityInfo/1/authorizationFlow/0"}},
		{"several problems at once", func(s *capif.ServiceSecurity) {
			s.NotificationDestination = "mailto:x@example.com"
			s.SecurityInfo[0].PrefSecurityMethods = nil
			s.SecurityInfo[1].InterfaceDetails.Port = intp(70000)
		}, []string{"/notificationDestination", "/securityInfo/0/prefSecurityMethods", "/securityInfo/1/interfaceDetails/port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validRequest()
			tt.mutate(s)
			got := security.ValidateServiceSecurity(s)
			if !slices.Equal(params(got), tt.want) {
				t.Errorf("invalid params %v, want %v (%+v)", params(got), tt.want, got)
			}
			for _, p := range got {
				if p.Reason == "" {
					t.Errorf("param %s has no reason", p.Param)
				}
			}
		})
	}
}

func TestValidateInterfaceDescription(t *testing.T) {
	t.Parallel()
	const p = "/securityInfo/0/interfaceDetails"
	tests := []struct {
		name string
		d    capif.InterfaceDescription
		want []string
	}{
		{"fqdn", capif.InterfaceDescription{Fqdn: "aef.example.com"}, nil},
		{"fqdn trailing dot", capif.InterfaceDescription{Fqdn: "aef.example.com."}, nil},
		{"fqdn with hyphen and digits", capif.InterfaceDescription{Fqdn: "a-1.b2.example.org"}, nil},
		{"fqdn single label", capif.InterfaceDescription{Fqdn: "localhost"}, []string{p + "/fqdn"}},
		{"fqdn too short", capif.InterfaceDescription{Fqdn: "a.b"}, []string{p + "/fqdn"}},
		{"fqdn numeric tld", capif.InterfaceDescription{Fqdn: "host.example.123"}, []string{p + "/fqdn"}},
		{"fqdn leading hyphen", capif.InterfaceDescription{Fqdn: "-a.example.com"}, []string{p + "/fqdn"}},
		{"fqdn underscore", capif.InterfaceDescription{Fqdn: "a_b.example.com"}, []string{p + "/fqdn"}},
		{"fqdn label of 64", capif.InterfaceDescription{Fqdn: strings.Repeat("a", 64) + ".example.com"}, []string{p + "/fqdn"}},
		{"fqdn label of 63", capif.InterfaceDescription{Fqdn: strings.Repeat("a", 63) + ".example.com"}, nil},
		{"fqdn of 253", capif.InterfaceDescription{Fqdn: strings.Repeat("abcdefghi.", 25) + "com"}, nil},
		{"fqdn of 254", capif.InterfaceDescription{Fqdn: strings.Repeat("abcdefghi.", 25) + "info"}, []string{p + "/fqdn"}},
		{"ipv4", capif.InterfaceDescription{Ipv4Addr: "192.0.2.1", Port: intp(0)}, nil},
		{"ipv4 bad", capif.InterfaceDescription{Ipv4Addr: "192.0.2.256"}, []string{p + "/ipv4Addr"}},
		{"ipv4 given ipv6", capif.InterfaceDescription{Ipv4Addr: "2001:db8::1"}, []string{p + "/ipv4Addr"}},
		{"ipv4 leading zeros", capif.InterfaceDescription{Ipv4Addr: "192.0.2.01"}, []string{p + "/ipv4Addr"}},
		{"ipv6", capif.InterfaceDescription{Ipv6Addr: "2001:db8::1", Port: intp(65535)}, nil},
		{"ipv6 given ipv4", capif.InterfaceDescription{Ipv6Addr: "192.0.2.1"}, []string{p + "/ipv6Addr"}},
		{"ipv6 with zone", capif.InterfaceDescription{Ipv6Addr: "fe80::1%eth0"}, []string{p + "/ipv6Addr"}},
		{"none of the three", capif.InterfaceDescription{Port: intp(443)}, []string{p}},
		{"two of the three", capif.InterfaceDescription{Fqdn: "aef.example.com", Ipv4Addr: "192.0.2.1"}, []string{p}},
		{"all three", capif.InterfaceDescription{Fqdn: "aef.example.com", Ipv4Addr: "192.0.2.1", Ipv6Addr: "2001:db8::1"}, []string{p}},
		{"port negative", capif.InterfaceDescription{Fqdn: "aef.example.com", Port: intp(-1)}, []string{p + "/port"}},
		{"port 65536", capif.InterfaceDescription{Fqdn: "aef.example.com", Port: intp(65536)}, []string{p + "/port"}},
		{"apiPrefix", capif.InterfaceDescription{Fqdn: "aef.example.com", APIPrefix: "/v1"}, nil},
		{"apiPrefix without slash", capif.InterfaceDescription{Fqdn: "aef.example.com", APIPrefix: "v1"}, []string{p + "/apiPrefix"}},
		{"apiPrefix too long", capif.InterfaceDescription{Fqdn: "aef.example.com", APIPrefix: "/" + strings.Repeat("a", security.MaxAPIPrefix)}, []string{p + "/apiPrefix"}},
		{"securityMethods empty", capif.InterfaceDescription{Fqdn: "aef.example.com", SecurityMethods: []capif.SecurityMethod{}}, []string{p + "/securityMethods"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validRequest()
			d := tt.d
			s.SecurityInfo[0] = capif.SecurityInformation{InterfaceDetails: &d, PrefSecurityMethods: []capif.SecurityMethod{capif.PSK}}
			s.SecurityInfo = s.SecurityInfo[:1]
			if got := params(security.ValidateServiceSecurity(s)); !slices.Equal(got, tt.want) {
				t.Errorf("invalid params %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidateRevocation(t *testing.T) {
	t.Parallel()
	valid := func() *capif.SecurityNotification {
		return &capif.SecurityNotification{APIInvokerID: "inv1", APIIDs: []string{"apiA"}, Cause: capif.OverlimitUsage}
	}
	tests := []struct {
		name   string
		mutate func(n *capif.SecurityNotification)
		want   []string
	}{
		{"valid", func(n *capif.SecurityNotification) {}, nil},
		{"unknown cause is accepted", func(n *capif.SecurityNotification) { n.Cause = "SOME_FUTURE_CAUSE" }, nil},
		{"apiInvokerId missing", func(n *capif.SecurityNotification) { n.APIInvokerID = "" }, []string{"/apiInvokerId"}},
		{"apiInvokerId of another invoker", func(n *capif.SecurityNotification) { n.APIInvokerID = "inv2" }, []string{"/apiInvokerId"}},
		{"apiIds missing", func(n *capif.SecurityNotification) { n.APIIDs = nil }, []string{"/apiIds"}},
		{"apiIds with an empty id", func(n *capif.SecurityNotification) { n.APIIDs = []string{"apiA", ""} }, []string{"/apiIds/1"}},
		{"cause missing", func(n *capif.SecurityNotification) { n.Cause = "" }, []string{"/cause"}},
		{"Rel-19 causes", func(n *capif.SecurityNotification) { n.Cause = capif.AuthorizationIssue }, nil},
		{"cause too long", func(n *capif.SecurityNotification) { n.Cause = strings.Repeat("X", security.MaxIDLength+1) }, []string{"/cause"}},
		{"Rel-19 accessToken", func(n *capif.SecurityNotification) { n.AccessToken = strings.Repeat("t", security.MaxAccessToken) }, nil},
		{"accessToken too long", func(n *capif.SecurityNotification) { n.AccessToken = strings.Repeat("t", security.MaxAccessToken+1) }, []string{"/accessToken"}},
		{"everything missing", func(n *capif.SecurityNotification) { *n = capif.SecurityNotification{} }, []string{"/apiIds", "/apiInvokerId", "/cause"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := valid()
			tt.mutate(n)
			if got := params(security.ValidateRevocation(n, "inv1")); !slices.Equal(got, tt.want) {
				t.Errorf("invalid params %v, want %v", got, tt.want)
			}
		})
	}
}
