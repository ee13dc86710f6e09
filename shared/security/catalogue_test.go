package security_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

func TestInterfaceKey(t *testing.T) {
	t.Parallel()
	same := []struct {
		name string
		a, b capif.InterfaceDescription
	}{
		{"fqdn case", capif.InterfaceDescription{Fqdn: "AEF.Example.COM", Port: intp(443)}, capif.InterfaceDescription{Fqdn: "aef.example.com", Port: intp(443)}},
		{"fqdn trailing dot", capif.InterfaceDescription{Fqdn: "aef.example.com."}, capif.InterfaceDescription{Fqdn: "aef.example.com"}},
		{"ipv6 notation", capif.InterfaceDescription{Ipv6Addr: "2001:DB8:0:0::1"}, capif.InterfaceDescription{Ipv6Addr: "2001:db8::1"}},
		{"security methods are not identity", capif.InterfaceDescription{Ipv4Addr: "192.0.2.1", SecurityMethods: []string{capif.PSK}}, capif.InterfaceDescription{Ipv4Addr: "192.0.2.1"}},
	}
	for _, tt := range same {
		if ka, kb := security.InterfaceKey(tt.a), security.InterfaceKey(tt.b); ka != kb {
			t.Errorf("%s: keys differ: %q vs %q", tt.name, ka, kb)
		}
	}
	distinct := []capif.InterfaceDescription{
		{Fqdn: "aef.example.com"},
		{Fqdn: "aef.example.com", Port: intp(443)},
		{Fqdn: "aef.example.com", Port: intp(8443)},
		{Fqdn: "aef.example.com", Port: intp(443), APIPrefix: "/a"},
		{Fqdn: "aef.example.com", Port: intp(443), APIPrefix: "/b"},
		{Fqdn: "other.example.com", Port: intp(443)},
		{Ipv4Addr: "192.0.2.1", Port: intp(443)},
		{Ipv4Addr: "192.0.2.2", Port: intp(443)},
		{Ipv6Addr: "2001:db8::1", Port: intp(443)},
		{Ipv6Addr: "::ffff:192.0.2.1", Port: intp(443)},
		{Port: intp(0)},
	}
	seen := map[string]int{}
	for i, d := range distinct {
		k := security.InterfaceKey(d)
		if j, dup := seen[k]; dup {
			t.Errorf("interfaces %d and %d share key %q", j, i, k)
		}
		seen[k] = i
	}
}

func TestPublishedAPIs(t *testing.T) {
	t.Parallel()
	d := capif.ServiceAPIDescription{APIID: "apiD", APIName: "delta", AefProfiles: []capif.AefProfile{
		{AefID: "aef1", SecurityMethods: []string{capif.PKI}, InterfaceDescriptions: []capif.InterfaceDescription{{Fqdn: "d.example.com"}}},
		{AefID: "aef2", DomainName: "d2.example.com"},
	}}
	want := []security.PublishedAPI{
		{AefID: "aef1", APIID: "apiD", APIName: "delta", SecurityMethods: []string{capif.PKI}, Interfaces: []capif.InterfaceDescription{{Fqdn: "d.example.com"}}},
		{AefID: "aef2", APIID: "apiD", APIName: "delta"},
	}
	if got := security.PublishedAPIs(d); !reflect.DeepEqual(got, want) {
		t.Errorf("PublishedAPIs = %+v, want %+v", got, want)
	}
	if got := security.PublishedAPIs(capif.ServiceAPIDescription{APIID: "x"}); len(got) != 0 {
		t.Errorf("no profiles gave %+v", got)
	}
}

func TestAEFCatalogue(t *testing.T) {
	t.Parallel()
	ids := func(a *security.AEF) []string {
		var out []string
		for _, p := range a.APIs {
			out = append(out, p.APIID)
		}
		return out
	}
	a := &security.AEF{AefID: "aef1"}
	for _, id := range []string{"m", "c", "x", "a"} {
		a.PutAPI(security.PublishedAPI{AefID: "aef1", APIID: id, APIName: "n-" + id})
	}
	if got, want := ids(a), []string{"a", "c", "m", "x"}; !slices.Equal(got, want) {
		t.Fatalf("catalogue order %v, want %v", got, want)
	}
	a.PutAPI(security.PublishedAPI{AefID: "aef1", APIID: "c", APIName: "renamed"})
	if got, want := ids(a), []string{"a", "c", "m", "x"}; !slices.Equal(got, want) {
		t.Fatalf("replacing kept %v, want %v", got, want)
	}
	if p, ok := a.API("c"); !ok || p.APIName != "renamed" {
		t.Errorf("API(c) = %+v, %v; want the replacement", p, ok)
	}
	if _, ok := a.API("zz"); ok {
		t.Error("API(zz) found an API that was never put")
	}
	if !a.RemoveAPI("m") {
		t.Error("RemoveAPI(m) reported nothing removed")
	}
	if a.RemoveAPI("m") {
		t.Error("RemoveAPI(m) twice reported a removal")
	}
	if got, want := ids(a), []string{"a", "c", "x"}; !slices.Equal(got, want) {
		t.Errorf("after removal %v, want %v", got, want)
	}
}

func TestInterfaceIndexAndKeys(t *testing.T) {
	t.Parallel()
	i1 := capif.InterfaceDescription{Fqdn: "a.example.com", Port: intp(443)}
	i2 := capif.InterfaceDescription{Ipv4Addr: "192.0.2.1", Port: intp(80), SecurityMethods: []string{capif.PSK}}
	i1again := capif.InterfaceDescription{Fqdn: "A.example.com", Port: intp(443), SecurityMethods: []string{capif.PKI}}
	pa := security.PublishedAPI{AefID: "aef1", APIID: "apiA", APIName: "alpha", SecurityMethods: []string{capif.OAUTH}, Interfaces: []capif.InterfaceDescription{i1, i2}}
	pb := security.PublishedAPI{AefID: "aef2", APIID: "apiB", APIName: "beta", Interfaces: []capif.InterfaceDescription{i1again}}
	pc := security.PublishedAPI{AefID: "aef2", APIID: "apiC", APIName: "gamma"} // domainName only

	idx := security.InterfaceIndex([]security.PublishedAPI{pa, pb, pc})
	if len(idx) != 2 {
		t.Fatalf("index has %d keys, want 2: %v", len(idx), idx)
	}
	k1, k2 := security.InterfaceKey(i1), security.InterfaceKey(i2)
	narrow := func(p security.PublishedAPI, d capif.InterfaceDescription) security.PublishedAPI {
		p.Interfaces = []capif.InterfaceDescription{d}
		return p
	}
	if got, want := idx[k1], []security.PublishedAPI{narrow(pa, i1), narrow(pb, i1again)}; !reflect.DeepEqual(got, want) {
		t.Errorf("index[%s] = %+v, want %+v", k1, got, want)
	}
	if got, want := idx[k2], []security.PublishedAPI{narrow(pa, i2)}; !reflect.DeepEqual(got, want) {
		t.Errorf("index[%s] = %+v, want %+v", k2, got, want)
	}
	if len(pa.Interfaces) != 2 {
		t.Error("InterfaceIndex narrowed its input")
	}

	dup := security.PublishedAPI{Interfaces: []capif.InterfaceDescription{i1, i2, i1again}}
	if got, want := security.InterfaceKeys(dup), []string{k1, k2}; !slices.Equal(got, want) {
		t.Errorf("InterfaceKeys = %v, want %v", got, want)
	}
	if got := security.InterfaceKeys(pc); len(got) != 0 {
		t.Errorf("InterfaceKeys of a domainName profile = %v", got)
	}
}
