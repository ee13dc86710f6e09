package security_test

import (
	"testing"

	"github.com/capifcore/capif-security/shared/security"
)

func TestNegotiateFeatures(t *testing.T) {
	t.Parallel()
	// Implemented: Notification_test_event (bit 1) and SecurityInfoPerAPI (bit 3), mask 0x5.
	tests := []struct {
		requested, want string
	}{
		{"", ""},                                 // absent: omitted
		{"0", "0"},                               // nothing requested
		{"1", "1"},                               // test event only
		{"2", "0"},                               // Notification_websocket is never negotiated
		{"4", "4"},                               // SecurityInfoPerAPI only
		{"8", "0"},                               // RNAA is never negotiated
		{"7", "5"},                               // 1+2+3 → 1+3
		{"F", "5"},                               // everything
		{"f", "5"},                               // lower case digits read the same
		{"a", "0"},                               // 2+4 → nothing
		{"b", "1"},                               // 1+2+4 → 1
		{"c", "4"},                               // 3+4 → 3
		{"d", "5"},                               // 1+3+4 → 1+3
		{"0F", "5"},                              // leading zero dropped
		{"10", "0"},                              // feature 5 only: not implemented
		{"FF", "5"},                              // features 5..8 masked out
		{"F0", "0"},                              // features 5..8 only
		{"1F5", "5"},                             // three digits
		{"000D", "5"},                            // four digits with zeros
		{"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", "5"}, // many digits
		{"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFF4", "4"},
		{"abcdef0123456789", "1"}, // last digit 9 = 1+4 → 1
	}
	for _, tt := range tests {
		if got := security.NegotiateFeatures(tt.requested); got != tt.want {
			t.Errorf("NegotiateFeatures(%q) = %q, want %q", tt.requested, got, tt.want)
		}
	}
}

func TestHasFeature(t *testing.T) {
	t.Parallel()
	tests := []struct {
		negotiated string
		feature    int
		want       bool
	}{
		{"", security.FeatureNotificationTestEvent, false},
		{"0", security.FeatureNotificationTestEvent, false},
		{"1", security.FeatureNotificationTestEvent, true},
		{"5", security.FeatureNotificationTestEvent, true},
		{"5", security.FeatureNotificationWebsocket, false},
		{"5", security.FeatureSecurityInfoPerAPI, true},
		{"5", security.FeatureRNAA, false},
		{"4", security.FeatureNotificationTestEvent, false},
		{"A", security.FeatureNotificationWebsocket, true},
		{"a", security.FeatureRNAA, true},
		{"10", 5, true},
		{"10", 1, false},
		{"1F", 5, true},
		{"20", 6, true},
		{"20", 5, false},
		{"5", 5, false}, // beyond the string: not set
		{"100", 9, true},
	}
	for _, tt := range tests {
		if got := security.HasFeature(tt.negotiated, tt.feature); got != tt.want {
			t.Errorf("HasFeature(%q, %d) = %v, want %v", tt.negotiated, tt.feature, got, tt.want)
		}
	}
}

// Negotiation never grants a feature that was not asked for, nor one that is not implemented.
func TestNegotiateFeaturesIsSubset(t *testing.T) {
	t.Parallel()
	for _, req := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F", "1F", "F1F"} {
		got := security.NegotiateFeatures(req)
		for f := 1; f <= 4*len(req); f++ {
			if security.HasFeature(got, f) && !security.HasFeature(req, f) {
				t.Errorf("NegotiateFeatures(%q) = %q grants feature %d that was not requested", req, got, f)
			}
			implemented := f == security.FeatureNotificationTestEvent || f == security.FeatureSecurityInfoPerAPI
			if security.HasFeature(got, f) != (implemented && security.HasFeature(req, f)) {
				t.Errorf("NegotiateFeatures(%q) = %q: feature %d negotiated = %v", req, got, f, security.HasFeature(got, f))
			}
		}
	}
}
