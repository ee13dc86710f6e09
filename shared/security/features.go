package security

import "strings"

// Features of the CAPIF_Security_API (TS 29.222 §8.5.6), numbered from 1 at the least significant
// bit of the last hex character.
const (
	FeatureNotificationTestEvent = 1 // requestTestNotification
	FeatureNotificationWebsocket = 2 // not implemented: never negotiated
	FeatureSecurityInfoPerAPI    = 3 // apiId in SecurityInformation
	FeatureRNAA                  = 4 // not implemented: never negotiated
)

// implementedFeatures is the bitmask this CCF supports: Notification_test_event and
// SecurityInfoPerAPI.
var implementedFeatures = []int{FeatureNotificationTestEvent, FeatureSecurityInfoPerAPI}

// NegotiateFeatures ANDs the consumer's supportedFeatures with what is implemented. An absent
// request yields "" (omitted in the response). The result has no leading zeros beyond one digit.
func NegotiateFeatures(requested string) string {
	if requested == "" {
		return ""
	}
	out := make([]byte, len(requested))
	for i := range requested {
		pos := len(requested) - 1 - i // hex digit index from the right
		var mask byte
		for _, f := range implementedFeatures {
			if (f-1)/4 == pos {
				mask |= 1 << ((f - 1) % 4)
			}
		}
		out[i] = "0123456789ABCDEF"[hexValue(requested[i])&mask]
	}
	s := strings.TrimLeft(string(out), "0")
	if s == "" {
		s = "0"
	}
	return s
}

// HasFeature reports whether the negotiated string sets feature n.
func HasFeature(negotiated string, n int) bool {
	pos := (n - 1) / 4
	if pos >= len(negotiated) {
		return false
	}
	return hexValue(negotiated[len(negotiated)-1-pos])&(1<<((n-1)%4)) != 0
}

func hexValue(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}
