package capif_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in   string
		want capif.Scope
	}{
		{"3gpp#aef1:api1", capif.Scope{"aef1": {"api1"}}},
		{"3gpp#aef1:api1,api2", capif.Scope{"aef1": {"api1", "api2"}}},
		{"3gpp#aef1:api1,api2;aef2:api3", capif.Scope{"aef1": {"api1", "api2"}, "aef2": {"api3"}}},
		{"3gpp#aef1:api1,api1", capif.Scope{"aef1": {"api1"}}},                // repeated name
		{"3gpp#aef1:b;aef1:a,b", capif.Scope{"aef1": {"b", "a"}}},             // repeated group merges
		{"3gpp#aef-1.x:api_1", capif.Scope{"aef-1.x": {"api_1"}}},             // other punctuation is fine
		{"3gpp#äef:ǎpi", capif.Scope{"äef": {"ǎpi"}}},                         // UTF-8
		{"3gpp#a:b;c:d;e:f", capif.Scope{"a": {"b"}, "c": {"d"}, "e": {"f"}}}, // three groups
		// RFC 6749 §3.3: space-separated elements, each a CAPIF scope; the union is granted.
		{"3gpp#aef-1:monitoring-event 3gpp#aef-1:qos-session", capif.Scope{"aef-1": {"monitoring-event", "qos-session"}}},
		{"3gpp#a:x 3gpp#b:y;a:z", capif.Scope{"a": {"x", "z"}, "b": {"y"}}},
		{"3gpp#a:x 3gpp#a:x", capif.Scope{"a": {"x"}}},
		{"3gpp#a:" + manyNames(capif.MaxScopeAPIs), capif.Scope{"a": strings.Split(manyNames(capif.MaxScopeAPIs), ",")}},
	}
	for _, tt := range tests {
		got, err := capif.ParseScope(tt.in)
		if err != nil {
			t.Errorf("ParseScope(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseScope(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseScopeErrors(t *testing.T) {
	tests := []struct {
		in, mention string // the error names where the scope is wrong
	}{
		{"", "3gpp#"},
		{"aef1:api1", "must start with"},
		{"3GPP#aef1:api1", "must start with"},
		{" 3gpp#aef1:api1", "element 1: scope is empty"},
		{"3gpp#", "names no AEF"},
		{"3gpp#aef1", "group 1"},
		{"3gpp#aef1:api1;aef2", "group 2"},
		{"3gpp#aef1:api1;", "group 2"},
		{"3gpp#;aef1:api1", "group 1"},
		{"3gpp#:api1", "aefId"},
		{"3gpp#aef 1:api1", "aefId"},
		{"3gpp#aef#1:api1", "aefId"},
		{"3gpp#aef,1:api1", "aefId"},
		{"3gpp#aef1:", "API name"},
		{"3gpp#aef1:api1,", "API name"},
		{"3gpp#aef1:,api1", "API name"},
		{"3gpp#aef1:api1,,api2", "API name"},
		{"3gpp#aef1:api 1", "element 2: scope must start with"},
		{"3gpp#aef1:api1:api2", "API name"},
		{"3gpp#aef1:api#1", "API name"},
		{"3gpp#aef1:api1;aef2:api2 ", "element 2: scope is empty"},
		{"3gpp#aef1:api1  3gpp#aef2:api2", "element 2: scope is empty"},
		{"3gpp#aef1:api1 3gpp#aef2", "element 2: scope group 1"},
		{"3gpp#a:" + strings.Repeat("x", capif.MaxScopeLength), "at most 8192"},
		{"3gpp#a:" + manyNames(capif.MaxScopeAPIs+1), "more than 1024 APIs"},
	}
	for _, tt := range tests {
		sc, err := capif.ParseScope(tt.in)
		if err == nil {
			t.Errorf("ParseScope(%q) = %v, want an error", tt.in, sc)
			continue
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("ParseScope(%q) error %q does not mention %q", tt.in, err, tt.mention)
		}
	}
}

func TestScopeString(t *testing.T) {
	tests := []struct {
		sc   capif.Scope
		want string
	}{
		{capif.Scope{"aef1": {"api1"}}, "3gpp#aef1:api1"},
		{capif.Scope{"b": {"z", "y"}, "a": {"x"}}, "3gpp#a:x;b:y,z"},
		{capif.Scope{"aef2": {"gamma"}, "aef1": {"delta", "alpha", "beta"}}, "3gpp#aef1:alpha,beta,delta;aef2:gamma"},
	}
	for _, tt := range tests {
		if got := tt.sc.String(); got != tt.want {
			t.Errorf("%v.String() = %q, want %q", tt.sc, got, tt.want)
		}
		back, err := capif.ParseScope(tt.want)
		if err != nil {
			t.Fatalf("canonical scope %q does not parse: %v", tt.want, err)
		}
		if back.String() != tt.want {
			t.Errorf("round trip of %q gives %q", tt.want, back.String())
		}
	}
	// String does not reorder the scope it renders.
	sc := capif.Scope{"a": {"z", "y"}}
	_ = sc.String()
	if !reflect.DeepEqual(sc["a"], []string{"z", "y"}) {
		t.Errorf("String sorted the scope in place: %v", sc["a"])
	}
}

func TestScopeAEFs(t *testing.T) {
	sc := capif.Scope{"c": {"1"}, "a": {"2"}, "b": {"3"}}
	if got, want := sc.AEFs(), []string{"a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("AEFs() = %v, want %v", got, want)
	}
	if got := (capif.Scope{}).AEFs(); len(got) != 0 {
		t.Errorf("empty scope AEFs() = %v", got)
	}
}

// manyNames is n distinct API names, comma-separated.
func manyNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	return strings.Join(names, ",")
}

// The largest scope the bounds let through, and one just over them: both must stay well under a
// millisecond (issue: 120,000 names once took 12 s of CPU).
func BenchmarkParseScope(b *testing.B) {
	for _, bc := range []struct{ name, scope string }{
		{"max-names", "3gpp#a:" + manyNames(capif.MaxScopeAPIs)},
		{"max-length", "3gpp#a:" + strings.Repeat("x,", capif.MaxScopeLength/2-8) + "y"},
		{"over-length", "3gpp#a:" + strings.Repeat("x,", 60000)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = capif.ParseScope(bc.scope)
			}
		})
	}
}
