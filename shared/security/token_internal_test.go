package security

import (
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

func TestWithin(t *testing.T) {
	t.Parallel()
	allowed := capif.Scope{"aef2": {"b"}, "aef1": {"a", "c"}}
	targets := []Target{{AefID: "aef1", APIID: "api-a", APIName: "a"}, {AefID: "aef1", APIID: "api-c", APIName: "c"}, {AefID: "aef2", APIID: "api-b", APIName: "b"}}
	for _, tc := range []struct{ scope, err string }{
		{"3gpp#aef1:a", ""},
		{"3gpp#aef2:b;aef1:c,a", ""},
		{"3gpp#aef1:b", `API "b" of AEF "aef1"`},
		{"3gpp#aef0:a", `AEF "aef0"`},
		{"3gpp#aef3:a", `AEF "aef3"`},
		{"3gpp#aef2:a;aef1:a", `API "a" of AEF "aef2"`},
		{"3gpp#aef1:z,b", `API "b" of AEF "aef1"`}, // the first missing in sorted order
		{"3gpp#aef1:api-c", `"api-c" is the apiId of "c" (3gpp#aef1:c)`},
		{"3gpp#aef2:api-c", `API "api-c" of AEF "aef2" is not authorized for OAUTH in the API invoker's security context`}, // another AEF's apiId: no hint
	} {
		want, err := capif.ParseScope(tc.scope)
		if err != nil {
			t.Fatal(err)
		}
		err = within(want, allowed, targets)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) ||
			tc.scope == "3gpp#aef2:api-c" && strings.Contains(err.Error(), "apiId of") {
			t.Errorf("%s within %s: %v, want %q", tc.scope, allowed, err, tc.err)
		}
	}
}
