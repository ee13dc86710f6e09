package fullapp

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestWarnExpiry: a WARN from 30 days before the CCF's certificate expires, none before.
func TestWarnExpiry(t *testing.T) {
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		left time.Duration
		warn bool
	}{{31 * 24 * time.Hour, false}, {29 * 24 * time.Hour, true}, {-time.Hour, true}} {
		var b bytes.Buffer
		WarnExpiry(slog.New(slog.NewTextHandler(&b, nil)), &x509.Certificate{NotAfter: now.Add(tt.left)}, now)
		if got := strings.Contains(b.String(), "level=WARN"); got != tt.warn {
			t.Errorf("%s left: logged %q", tt.left, b.String())
		}
	}
}
