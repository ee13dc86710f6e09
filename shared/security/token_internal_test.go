package security

import (
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

func TestWithin(t *testing.T) {
	t.Parallel()
	allowed := capif.Scope{"aef2": {"b"}, "aef1": {"a", "c"}}
	for _, tc := range []struct{ scope, err string }{
		{"3gpp#aef1:a", ""},
		{"3gpp#aef2:b;aef1:c,a", ""},
		{"3gpp#aef1:b", `API "b" of AEF "aef1"`},
		{"3gpp#aef0:a", `AEF "aef0"`},
		{"3gpp#aef3:a", `AEF "aef3"`},
		{"3gpp#aef2:a;aef1:a", `API "a" of AEF "aef2"`},
		{"3gpp#aef1:z,b", `API "b" of AEF "aef1"`}, // the first missing in sorted order
	} {
		want, err := capif.ParseScope(tc.scope)
		if err != nil {
			t.Fatal(err)
		}
		err = within(want, allowed)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s within %s: %v, want %q", tc.scope, allowed, err, tc.err)
		}
	}
}
