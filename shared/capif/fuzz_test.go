package capif_test

import (
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

// FuzzParseScope: no panic; a parsed scope is within the bounds, renders to a scope that parses
// to the same grant, and every refusal names what is wrong.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"3gpp#aef1:api1,api2;aef2:api3", "3gpp#a:b 3gpp#c:d", "3gpp#", "3gpp#a:b;", " 3gpp#a:b", "3gpp#a:b  3gpp#c:d", "3gpp#ä:ǎ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := capif.ParseScope(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		n := 0
		for _, names := range sc {
			n += len(names)
		}
		if len(s) > capif.MaxScopeLength || n > capif.MaxScopeAPIs || n == 0 {
			t.Fatalf("%q accepted with %d names", s, n)
		}
		again, err := capif.ParseScope(sc.String())
		if err != nil || again.String() != sc.String() {
			t.Fatalf("%q renders as %q, which parses to %v, %v", s, sc.String(), again, err)
		}
	})
}
