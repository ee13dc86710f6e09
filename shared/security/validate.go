package security

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
)

// Limits that keep every security context storable in any back end (a DynamoDB item holds 400 KB).
const (
	MaxNotificationDestination = 2 << 10
	MaxSecurityInfo            = 100
	MaxInfoLength              = 4 << 10
	MaxEncodedContext          = 256 << 10
	MaxPrefSecurityMethods     = 16
	MaxIDLength                = 256
	MaxAPIPrefix               = 200 // keeps every InterfaceKey storable as a key
	MaxFlows                   = 16  // authorizationFlow / grantType items of one entry
	MaxAccessToken             = 8 << 10
)

// fqdnPattern is the Fqdn schema of TS 29.571.
var fqdnPattern = regexp.MustCompile(`^([0-9A-Za-z]([-0-9A-Za-z]{0,61}[0-9A-Za-z])?\.)+[A-Za-z]{2,63}\.?$`)

// ValidateServiceSecurity checks a ServiceSecurity sent by an invoker, structurally (before any
// registry lookup), and returns every violation as a JSON pointer.
func ValidateServiceSecurity(s *capif.ServiceSecurity) []capif.InvalidParam {
	var out []capif.InvalidParam
	if reason := notificationDestinationProblem(s.NotificationDestination); reason != "" {
		out = append(out, capif.InvalidParam{Param: "/notificationDestination", Reason: reason})
	}
	if s.SupportedFeatures != "" && !isHex(s.SupportedFeatures) {
		out = append(out, param("/supportedFeatures", "must be a hexadecimal string"))
	}
	switch n := len(s.SecurityInfo); {
	case n == 0:
		out = append(out, param("/securityInfo", "must contain at least one entry"))
	case n > MaxSecurityInfo:
		out = append(out, param("/securityInfo", "at most %d entries are accepted", MaxSecurityInfo))
		return out
	}
	for i, e := range s.SecurityInfo {
		p := fmt.Sprintf("/securityInfo/%d", i)
		switch {
		case e.AefID != "" && e.InterfaceDetails != nil:
			out = append(out, param(p, "exactly one of aefId and interfaceDetails must be present, not both"))
		case e.AefID == "" && e.InterfaceDetails == nil:
			out = append(out, param(p, "exactly one of aefId and interfaceDetails must be present"))
		case e.InterfaceDetails != nil:
			out = append(out, validateInterface(*e.InterfaceDetails, p+"/interfaceDetails")...)
		}
		if len(e.AefID) > MaxIDLength {
			out = append(out, param(p+"/aefId", "longer than %d characters", MaxIDLength))
		}
		if len(e.APIID) > MaxIDLength {
			out = append(out, param(p+"/apiId", "longer than %d characters", MaxIDLength))
		}
		switch n := len(e.PrefSecurityMethods); {
		case n == 0:
			out = append(out, param(p+"/prefSecurityMethods", "must contain at least one security method"))
		case n > MaxPrefSecurityMethods:
			out = append(out, param(p+"/prefSecurityMethods", "at most %d methods are accepted", MaxPrefSecurityMethods))
		case !containsKnown(e.PrefSecurityMethods):
			out = append(out, param(p+"/prefSecurityMethods", "contains none of PSK, PKI, OAUTH"))
		}
		if len(e.AuthenticationInfo) > MaxInfoLength {
			out = append(out, param(p+"/authenticationInfo", "longer than %d bytes", MaxInfoLength))
		}
		if len(e.AuthorizationInfo) > MaxInfoLength {
			out = append(out, param(p+"/authorizationInfo", "longer than %d bytes", MaxInfoLength))
		}
		out = append(out, validateFlows(e.AuthorizationFlow, p+"/authorizationFlow")...)
		out = append(out, validateFlows(e.GrantType, p+"/grantType")...)
	}
	return out
}

// validateFlows checks an authorizationFlow (Rel-18) or grantType (Rel-19) array: minItems 1
// when present, and each item a value of the open enumeration, i.e. any non-empty string, so
// that values of later releases are kept too.
func validateFlows(flows []string, p string) []capif.InvalidParam {
	switch {
	case flows == nil:
		return nil
	case len(flows) == 0:
		return []capif.InvalidParam{param(p, "must contain at least one value when present")}
	case len(flows) > MaxFlows:
		return []capif.InvalidParam{param(p, "at most %d values are accepted", MaxFlows)}
	}
	var out []capif.InvalidParam
	for i, f := range flows {
		switch {
		case f == "":
			out = append(out, param(fmt.Sprintf("%s/%d", p, i), "is empty"))
		case len(f) > MaxIDLength:
			out = append(out, param(fmt.Sprintf("%s/%d", p, i), "longer than %d characters", MaxIDLength))
		}
	}
	return out
}

func notificationDestinationProblem(dest string) string {
	if dest == "" {
		return "is required"
	}
	if len(dest) > MaxNotificationDestination {
		return fmt.Sprintf("longer than %d bytes", MaxNotificationDestination)
	}
	u, err := url.Parse(dest)
	switch {
	case err != nil:
		return "is not a valid URI"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http or https URI"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry user information"
	}
	return ""
}

func validateInterface(d capif.InterfaceDescription, p string) []capif.InvalidParam {
	var out []capif.InvalidParam
	n := 0
	for _, v := range []string{d.Ipv4Addr, d.Ipv6Addr, d.Fqdn} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		out = append(out, param(p, "exactly one of ipv4Addr, ipv6Addr and fqdn must be present"))
	}
	if d.Ipv4Addr != "" {
		if a, err := netip.ParseAddr(d.Ipv4Addr); err != nil || !a.Is4() {
			out = append(out, param(p+"/ipv4Addr", "is not a dotted-decimal IPv4 address"))
		}
	}
	if d.Ipv6Addr != "" {
		if a, err := netip.ParseAddr(d.Ipv6Addr); err != nil || !a.Is6() || a.Zone() != "" {
			out = append(out, param(p+"/ipv6Addr", "is not an IPv6 address"))
		}
	}
	if d.Fqdn != "" && (len(d.Fqdn) < 4 || len(d.Fqdn) > 253 || !fqdnPattern.MatchString(d.Fqdn)) {
		out = append(out, param(p+"/fqdn", "is not a fully qualified domain name"))
	}
	if d.Port != nil && (*d.Port < 0 || *d.Port > 65535) {
		out = append(out, param(p+"/port", "must be between 0 and 65535"))
	}
	switch {
	case d.APIPrefix != "" && !strings.HasPrefix(d.APIPrefix, "/"):
		out = append(out, param(p+"/apiPrefix", "must start with /"))
	case len(d.APIPrefix) > MaxAPIPrefix:
		out = append(out, param(p+"/apiPrefix", "longer than %d bytes", MaxAPIPrefix))
	}
	if d.SecurityMethods != nil && len(d.SecurityMethods) == 0 {
		out = append(out, param(p+"/securityMethods", "must not be empty when present"))
	}
	return out
}

// ValidateRevocation checks the SecurityNotification body of POST …/delete.
func ValidateRevocation(n *capif.SecurityNotification, pathInvokerID string) []capif.InvalidParam {
	var out []capif.InvalidParam
	switch {
	case n.APIInvokerID == "":
		out = append(out, param("/apiInvokerId", "is required"))
	case n.APIInvokerID != pathInvokerID:
		out = append(out, param("/apiInvokerId", "does not match the apiInvokerId of the URI"))
	}
	if len(n.APIIDs) == 0 {
		out = append(out, param("/apiIds", "must contain at least one apiId"))
	}
	for i, id := range n.APIIDs {
		if id == "" {
			out = append(out, param(fmt.Sprintf("/apiIds/%d", i), "is empty"))
		}
	}
	switch {
	case n.Cause == "":
		out = append(out, param("/cause", "is required"))
	case len(n.Cause) > MaxIDLength: // any other value is passed on (open enumeration)
		out = append(out, param("/cause", "longer than %d characters", MaxIDLength))
	}
	if len(n.AccessToken) > MaxAccessToken {
		out = append(out, param("/accessToken", "longer than %d bytes", MaxAccessToken))
	}
	return out
}

func containsKnown(ms []capif.SecurityMethod) bool {
	for _, m := range ms {
		if capif.IsKnownSecurityMethod(m) {
			return true
		}
	}
	return false
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
