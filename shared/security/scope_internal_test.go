package security

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parseGrant (the token path's reading) and ParseScope (the public one) agree on every scope.
func FuzzParseGrant(f *testing.F) {
	for _, s := range []string{"3gpp#b:y,x;a:z", "3gpp#a:x 3gpp#a:x", "3gpp#a:b;", "3gpp#", "3gpp#a:" + strings.Repeat("n,", 1100) + "m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, gerr := parseGrant(s, nil)
		sc, serr := ParseScope(s)
		if (gerr == nil) != (serr == nil) {
			t.Fatalf("%q: parseGrant error %v, ParseScope's %v", s, gerr, serr)
		}
		if gerr != nil {
			return
		}
		if g.String() != sc.String() || !slices.Equal(g.aefs(), sc.AEFs()) {
			t.Fatalf("%q: grant %s %v, scope %s %v", s, g, g.aefs(), sc, sc.AEFs())
		}
	})
}

func TestGrantWithin(t *testing.T) {
	allowed := newGrant([]scopePair{{"aef2", "b"}, {"aef1", "a"}, {"aef1", "c"}, {"aef1", "a"}})
	if got := allowed.String(); got != "3gpp#aef1:a,c;aef2:b" {
		t.Fatalf("allowed = %s", got)
	}
	for _, tc := range []struct{ scope, err string }{
		{"3gpp#aef1:a", ""},
		{"3gpp#aef2:b;aef1:c,a", ""},
		{"3gpp#aef1:b", `API "b" of AEF "aef1"`},
		{"3gpp#aef0:a", `AEF "aef0"`},
		{"3gpp#aef3:a", `AEF "aef3"`},
		{"3gpp#aef2:a;aef1:a", `API "a" of AEF "aef2"`},
	} {
		want, err := parseGrant(tc.scope, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = want.within(allowed)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s within %s: %v, want %q", tc.scope, allowed, err, tc.err)
		}
	}
}

// The token path's reading of the largest scopes the bounds let through (BenchmarkParseScope
// has ParseScope's).
func BenchmarkParseGrant(b *testing.B) {
	names := make([]string, MaxScopeAPIs)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i)
	}
	for _, bc := range []struct{ name, scope string }{
		{"max-names", "3gpp#a:" + strings.Join(names, ",")},
		{"max-length", "3gpp#a:" + strings.Repeat("x,", MaxScopeLength/2-8) + "y"},
		{"over-length", "3gpp#a:" + strings.Repeat("x,", 60000)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = parseGrant(bc.scope, nil)
			}
		})
	}
}
