package notify

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	// want is "" for allowed, otherwise a fragment of the refusal reason.
	tests := []struct {
		addr          string
		allowLoopback bool
		want          string
	}{
		// Metadata endpoints, in every spelling that reaches them.
		{"169.254.169.254", false, "a link-local address"},
		{"169.254.169.254", true, "a link-local address"},
		{"::ffff:169.254.169.254", false, "IPv4-mapped form of a link-local address (169.254.169.254)"},
		{"64:ff9b::a9fe:a9fe", false, "NAT64 form of a link-local address (169.254.169.254)"},
		{"::a9fe:a9fe", false, "IPv4-compatible"},
		{"2002:a9fe:a9fe::1", false, "6to4 form of a link-local address"},
		{"fd00:ec2::254", false, "unique-local"},
		{"fe80::1", false, "link-local"},
		// A zoned address never matches a netip.Prefix; the guard must strip the zone.
		{"fe80::1%eth0", false, "link-local"},

		// Loopback: refused unless allowed, and then only the direct and mapped forms.
		{"127.0.0.1", false, "loopback"},
		{"127.1.2.3", false, "loopback"},
		{"::1", false, "loopback"},
		{"::ffff:127.0.0.1", false, "IPv4-mapped form of a loopback address"},
		{"127.0.0.1", true, ""},
		{"127.1.2.3", true, ""},
		{"::1", true, ""},
		{"::ffff:127.0.0.1", true, ""},
		{"64:ff9b::7f00:1", true, "NAT64 form of a loopback address"},
		{"::7f00:1", true, "IPv4-compatible"},

		// Unspecified addresses connect to the local host on Linux; the loopback option does not admit them.
		{"0.0.0.0", false, "unspecified"},
		{"0.0.0.0", true, "unspecified"},
		{"0.1.2.3", true, "this network"},
		{"::", false, "unspecified"},
		{"::", true, "unspecified"},
		{"::ffff:0.0.0.0", true, "IPv4-mapped form of the unspecified address"},

		// Private and shared ranges, with their edges.
		{"10.1.2.3", false, "private"},
		{"10.1.2.3", true, "private"},
		{"172.16.0.1", false, "private"},
		{"172.31.255.255", false, "private"},
		{"172.15.255.255", false, ""},
		{"172.32.0.1", false, ""},
		{"192.168.1.1", false, "private"},
		{"::ffff:10.0.0.1", false, "IPv4-mapped form of a private address"},
		{"100.64.0.1", false, "carrier-grade NAT"},
		{"100.127.255.255", false, "carrier-grade NAT"},
		{"100.63.255.255", false, ""},
		{"100.128.0.1", false, ""},
		{"fd00::1", false, "unique-local"},
		{"fc00::1", false, "unique-local"},

		// Multicast, broadcast, reserved, documentation, benchmarking, protocol assignments.
		{"224.0.0.1", false, "multicast"},
		{"239.255.255.250", false, "multicast"},
		{"ff02::1", false, "multicast"},
		{"255.255.255.255", false, "broadcast"},
		{"240.0.0.1", false, "reserved"},
		{"192.0.2.1", false, "documentation"},
		{"198.51.100.7", false, "documentation"},
		{"203.0.113.9", false, "documentation"},
		{"2001:db8::1", false, "documentation"},
		{"3fff::1", false, "documentation"},
		{"198.18.0.1", false, "benchmarking"},
		{"198.19.255.255", false, "benchmarking"},
		{"192.0.0.170", false, "IETF protocol assignment"},
		{"2001:2::1", false, "IETF protocol assignment"},
		{"2001::1", false, "Teredo"},
		{"100::1", false, "discard-only"},
		{"fec0::1", false, "site-local"},
		{"5f00::1", false, "not a global unicast"},
		{"::ffff:0:a9fe:a9fe", false, "IPv4-translated"},

		// Public destinations, directly and through the translation forms that can reach them.
		{"8.8.8.8", false, ""},
		{"1.1.1.1", false, ""},
		{"::ffff:8.8.8.8", false, ""},
		{"64:ff9b::808:808", false, ""},
		{"2002:808:808::1", false, ""},
		{"2606:4700:4700::1111", false, ""},
		{"2a05:d018::1", false, ""},
	}
	for _, tt := range tests {
		name := tt.addr
		if tt.allowLoopback {
			name += "/loopback-allowed"
		}
		t.Run(name, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.addr)
			network := "tcp6"
			if ip.Is4() {
				network = "tcp4"
			}
			// Both entry points: the exported check and the Dialer control that uses it.
			errs := map[string]error{
				"CheckAddr": CheckAddr(ip, tt.allowLoopback),
				"guard":     guard(tt.allowLoopback)(context.Background(), network, netip.AddrPortFrom(ip, 443).String(), nil),
			}
			for via, err := range errs {
				if tt.want == "" {
					if err != nil {
						t.Errorf("%s: %v, want allowed", via, err)
					}
					continue
				}
				var re *RefusedError
				if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
					t.Fatalf("%s: %v, want a *RefusedError matching ErrRefused", via, err)
				}
				if !strings.Contains(err.Error(), tt.want) || !strings.HasSuffix(err.Error(), "; refused") {
					t.Errorf("%s: %q, want it to mention %q and end in \"; refused\"", via, err, tt.want)
				}
			}
		})
	}
}

func TestRefusedErrorMessage(t *testing.T) {
	tests := []struct {
		err  RefusedError
		want string
	}{
		{RefusedError{Addr: netip.MustParseAddr("169.254.169.254"), Reason: "a link-local address"},
			"destination 169.254.169.254 is a link-local address; refused"},
		{RefusedError{Host: "169.254.169.254", Addr: netip.MustParseAddr("169.254.169.254"), Reason: "a link-local address"},
			"destination 169.254.169.254 is a link-local address; refused"},
		{RefusedError{Host: "metadata.example", Addr: netip.MustParseAddr("169.254.169.254"), Reason: "a link-local address"},
			"destination metadata.example resolves to 169.254.169.254, a link-local address; refused"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	if got := CheckAddr(netip.MustParseAddr("169.254.169.254"), false).Error(); got != tests[0].want {
		t.Errorf("CheckAddr: got %q, want %q", got, tests[0].want)
	}
}

func TestGuardFailsClosed(t *testing.T) {
	tests := []struct{ network, address string }{
		{"udp4", "8.8.8.8:53"},
		{"tcp", "8.8.8.8:443"},
		{"tcp4", "not-an-address"},
		{"tcp4", "8.8.8.8"},
		{"tcp6", ""},
	}
	for _, tt := range tests {
		err := guard(true)(context.Background(), tt.network, tt.address, nil)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("guard(%q, %q) = %v, want ErrRefused", tt.network, tt.address, err)
		}
	}
}
