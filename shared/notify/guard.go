package notify

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/capifcore/capif-security/shared/security"
)

// ErrRefused is matched (errors.Is) by every refusal of a destination address. A refused
// destination will not become acceptable by retrying, so an outbox retrier may give up on it.
// It matches security.ErrUndeliverable: a refused destination is never retried.
var ErrRefused = fmt.Errorf("destination refused: %w", security.ErrUndeliverable)

// RefusedError says which address was refused and why.
type RefusedError struct {
	Host   string     // the URL's host when it is a name; "" for an IP literal or a bare dial
	Addr   netip.Addr // the address that was about to be connected
	Reason string     // e.g. "a link-local address"
}

func (e *RefusedError) Error() string {
	if e.Host != "" && e.Host != e.Addr.String() {
		return fmt.Sprintf("destination %s resolves to %s, %s; refused", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("destination %s is %s; refused", e.Addr, e.Reason)
}

// Unwrap lets errors.Is(err, ErrRefused) match.
func (e *RefusedError) Unwrap() error { return ErrRefused }

type rangeRule struct {
	prefix netip.Prefix
	reason string
}

func rules(pairs ...string) []rangeRule {
	out := make([]rangeRule, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, rangeRule{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// IPv4 ranges that are never a legitimate callback target (IANA special-purpose registry).
// Order matters only where ranges nest: the narrower one comes first for a precise message.
var v4Rules = rules(
	"0.0.0.0/32", "the unspecified address",
	"0.0.0.0/8", `a "this network" address`, // Linux connects 0.x to the local host
	"10.0.0.0/8", "a private address",
	"100.64.0.0/10", "a carrier-grade NAT (shared) address",
	"127.0.0.0/8", "a loopback address",
	"169.254.0.0/16", "a link-local address", // instance metadata, AWS DNS and time sync live here
	"172.16.0.0/12", "a private address",
	"192.0.0.0/24", "an IETF protocol assignment address",
	"192.0.2.0/24", "a documentation address",
	"192.88.99.0/24", "a 6to4 relay anycast address",
	"192.168.0.0/16", "a private address",
	"198.18.0.0/15", "a benchmarking address",
	"198.51.100.0/24", "a documentation address",
	"203.0.113.0/24", "a documentation address",
	"224.0.0.0/4", "a multicast address",
	"255.255.255.255/32", "the broadcast address",
	"240.0.0.0/4", "a reserved address",
)

// IPv6 ranges refused outright. Forms that embed an IPv4 address (mapped, NAT64, 6to4) are
// handled before these, and anything outside global unicast 2000::/3 is refused after them.
var v6Rules = rules(
	"::/128", "the unspecified address",
	"::1/128", "a loopback address",
	"::/96", "an IPv4-compatible address (deprecated)",
	"::ffff:0:0:0/96", "an IPv4-translated address",
	"64:ff9b:1::/48", "a local-use NAT64 address",
	"100::/64", "a discard-only address",
	"2001::/32", "a Teredo address",
	"2001:db8::/32", "a documentation address",
	"2001::/23", "an IETF protocol assignment address",
	"3fff::/20", "a documentation address",
	"fc00::/7", "a unique-local address", // includes AWS's fd00:ec2::254 metadata endpoint
	"fe80::/10", "a link-local address",
	"fec0::/10", "a site-local address (deprecated)",
	"ff00::/8", "a multicast address",
)

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	global6   = netip.MustParsePrefix("2000::/3")
	loop4     = netip.MustParsePrefix("127.0.0.0/8")
)

// CheckAddr decides whether a connection to ip may be made: nil when allowed, otherwise a
// *RefusedError. allowLoopback admits 127.0.0.0/8, ::1 and their IPv4-mapped form only.
func CheckAddr(ip netip.Addr, allowLoopback bool) error {
	if reason := refusal(ip, allowLoopback); reason != "" {
		return &RefusedError{Addr: ip, Reason: reason}
	}
	return nil
}

func refusal(ip netip.Addr, allowLoopback bool) string {
	if !ip.IsValid() {
		return "an invalid address"
	}
	// A zoned address never matches a netip.Prefix, so the zone must go before any check.
	ip = ip.WithZone("")
	if ip.Is4() {
		return refusal4(ip, allowLoopback)
	}
	switch {
	case ip.Is4In6():
		// The kernel connects ::ffff:a.b.c.d to a.b.c.d itself, loopback included.
		v4 := ip.Unmap()
		if r := refusal4(v4, allowLoopback); r != "" {
			return fmt.Sprintf("an IPv4-mapped form of %s (%s)", r, v4)
		}
		return ""
	case nat64.Contains(ip):
		// NAT64 reaches public IPv4 hosts from IPv6-only subnets; a refused IPv4 stays refused,
		// loopback too, since the translator is not this host.
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if r := refusal4(v4, false); r != "" {
			return fmt.Sprintf("a NAT64 form of %s (%s)", r, v4)
		}
		return ""
	case sixToFour.Contains(ip):
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		if r := refusal4(v4, false); r != "" {
			return fmt.Sprintf("a 6to4 form of %s (%s)", r, v4)
		}
		return ""
	case allowLoopback && ip == netip.IPv6Loopback():
		return ""
	}
	for _, r := range v6Rules {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	if !global6.Contains(ip) {
		return "not a global unicast address"
	}
	return ""
}

func refusal4(ip netip.Addr, allowLoopback bool) string {
	if allowLoopback && loop4.Contains(ip) {
		return ""
	}
	for _, r := range v4Rules {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	return ""
}

// guard is a net.Dialer.ControlContext: it runs on the resolved address about to be connected,
// after DNS, so a name that re-resolves to a refused address (DNS rebinding) is still caught.
// Anything it cannot parse is refused: fail closed.
func guard(allowLoopback bool) func(ctx context.Context, network, address string, _ syscall.RawConn) error {
	return func(_ context.Context, network, address string, _ syscall.RawConn) error {
		if network != "tcp4" && network != "tcp6" {
			return fmt.Errorf("network %q refused: %w", network, ErrRefused)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial address %q not understood; refused: %w", address, ErrRefused)
		}
		return CheckAddr(ap.Addr(), allowLoopback)
	}
}
