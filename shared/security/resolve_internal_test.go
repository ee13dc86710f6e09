package security

import (
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

func TestCandidates(t *testing.T) {
	t.Parallel()
	ifWith := func(ms ...capif.SecurityMethod) *capif.InterfaceDescription {
		return &capif.InterfaceDescription{Fqdn: "a.example.com", SecurityMethods: ms}
	}
	tests := []struct {
		name    string
		profile []capif.SecurityMethod
		iface   *capif.InterfaceDescription
		want    []capif.SecurityMethod
	}{
		{"neither level: all three", nil, nil, []capif.SecurityMethod{capif.PSK, capif.PKI, capif.OAUTH}},
		{"interface without methods: all three", nil, ifWith(), []capif.SecurityMethod{capif.PSK, capif.PKI, capif.OAUTH}},
		{"profile only", []capif.SecurityMethod{capif.PKI}, nil, []capif.SecurityMethod{capif.PKI}},
		{"profile through a bare interface", []capif.SecurityMethod{capif.PKI, capif.PSK}, ifWith(), []capif.SecurityMethod{capif.PSK, capif.PKI}},
		{"interface takes precedence", []capif.SecurityMethod{capif.PKI}, ifWith(capif.OAUTH), []capif.SecurityMethod{capif.OAUTH}},
		{"unknown methods do not count", nil, ifWith("FOO", capif.PSK), []capif.SecurityMethod{capif.PSK}},
		{"only unknown methods: nothing", []capif.SecurityMethod{"FOO"}, nil, nil},
	}
	for _, tt := range tests {
		got := candidates(tt.profile, tt.iface)
		for _, m := range capif.KnownSecurityMethods {
			want := false
			for _, w := range tt.want {
				want = want || w == m
			}
			if got.has(m) != want {
				t.Errorf("%s: has(%s) = %v, want %v", tt.name, m, got.has(m), want)
			}
		}
		if got.has("FOO") {
			t.Errorf("%s: an unknown method is a candidate", tt.name)
		}
	}
}

func TestAPICandidatesIntersectsInterfaces(t *testing.T) {
	t.Parallel()
	p := PublishedAPI{
		SecurityMethods: []capif.SecurityMethod{capif.PKI, capif.OAUTH},
		Interfaces: []capif.InterfaceDescription{
			{Fqdn: "a.example.com", SecurityMethods: []capif.SecurityMethod{capif.OAUTH, capif.PSK}},
			{Ipv4Addr: "192.0.2.1"}, // profile level: PKI, OAUTH
		},
	}
	got := apiCandidates(p)
	if !got.has(capif.OAUTH) || got.has(capif.PKI) || got.has(capif.PSK) {
		t.Errorf("apiCandidates = %03b, want only OAUTH", got)
	}
	if got := apiCandidates(PublishedAPI{SecurityMethods: []capif.SecurityMethod{capif.PSK}}); !got.has(capif.PSK) || got.has(capif.PKI) {
		t.Errorf("domainName profile candidates = %03b, want only PSK", got)
	}
}

func TestSelectMethod(t *testing.T) {
	t.Parallel()
	all := setOf(capif.KnownSecurityMethods)
	type methods = []capif.SecurityMethod
	operator := methods{capif.OAUTH, capif.PKI, capif.PSK}
	tests := []struct {
		pref     methods
		priority methods
		cands    methodSet
		want     capif.SecurityMethod
		ok       bool
	}{
		{methods{capif.PSK, capif.PKI}, nil, all, capif.PSK, true},
		{methods{capif.OAUTH, capif.PSK}, nil, all, capif.OAUTH, true}, // invoker's order, not the spec's
		{methods{capif.PSK, capif.PKI}, nil, setOf(methods{capif.PKI, capif.OAUTH}), capif.PKI, true},
		{methods{"FOO", capif.OAUTH}, nil, all, capif.OAUTH, true},
		{methods{"FOO"}, nil, all, "", false},
		{methods{capif.PSK}, nil, setOf(methods{capif.OAUTH}), "", false},
		{methods{capif.PSK}, nil, 0, "", false},
		// The operator's priority beats the invoker's order, among what both allow.
		{methods{capif.PSK, capif.PKI, capif.OAUTH}, operator, all, capif.OAUTH, true},
		{methods{capif.PSK, capif.PKI, capif.OAUTH}, operator, setOf(methods{capif.PSK, capif.PKI}), capif.PKI, true},
		{methods{capif.PSK}, operator, all, capif.PSK, true},
		{methods{capif.PSK}, operator, setOf(methods{capif.OAUTH}), "", false},
		// A partial list: what it leaves out ranks after it, in the invoker's order.
		{methods{capif.PSK, capif.PKI}, methods{capif.OAUTH}, all, capif.PSK, true},
		{methods{capif.PSK, capif.OAUTH}, methods{capif.OAUTH}, setOf(methods{capif.PSK}), capif.PSK, true},
		{methods{"FOO", capif.PKI}, methods{"FOO"}, all, capif.PKI, true},
	}
	for _, tt := range tests {
		got, ok := selectMethod(tt.pref, tt.priority, tt.cands)
		if got != tt.want || ok != tt.ok {
			t.Errorf("selectMethod(%v, %v, %03b) = %q, %v; want %q, %v", tt.pref, tt.priority, tt.cands, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"https://invoker.example.com:8443/cb/secret?token=x": "https://invoker.example.com:8443",
		"http://10.0.0.1/x":         "http://10.0.0.1",
		"https://h.example.com/%zz": "(unparsable)",
	}
	for in, want := range tests {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
