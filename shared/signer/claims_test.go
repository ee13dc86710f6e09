package signer

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/capifcore/capif-security/shared/security"
)

// checkClaims holds appendClaims to encoding/json: the same members (so a renamed json tag
// cannot go unnoticed) and the same claims when read back.
func checkClaims(t *testing.T, c security.TokenClaims) {
	t.Helper()
	got := appendClaims(nil, &c)
	want, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	var gm, wm map[string]json.RawMessage
	if err := json.Unmarshal(got, &gm); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	_ = json.Unmarshal(want, &wm)
	if k1, k2 := slices.Sorted(maps.Keys(gm)), slices.Sorted(maps.Keys(wm)); !slices.Equal(k1, k2) {
		t.Errorf("members %v, encoding/json's %v", k1, k2)
	}
	var back, wantBack security.TokenClaims
	_ = json.Unmarshal(got, &back)
	_ = json.Unmarshal(want, &wantBack)
	if !reflect.DeepEqual(back, wantBack) {
		t.Errorf("read back %+v, encoding/json's %+v", back, wantBack)
	}
}

func TestAppendClaims(t *testing.T) {
	base := security.TokenClaims{Issuer: "https://ccf.example.com", Subject: "inv1", ClientID: "inv1",
		Audience: []string{"aef1", "aef2"}, Scope: "3gpp#aef1:alpha;aef2:beta", IssuedAt: 1764590000, Expiry: 1764593600, ID: "jti-1"}
	bound := base
	bound.Confirmation = &security.Confirmation{X5tS256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
	odd := base
	odd.Issuer, odd.Subject, odd.Scope = `q"b\ <&> `+"\u2028\n", "\xff bad", "é🎉"
	odd.Audience = []string{""}
	for _, c := range []security.TokenClaims{base, bound, odd} {
		checkClaims(t, c)
	}
}

func FuzzAppendClaims(f *testing.F) {
	f.Add("iss", "sub", "aud", "scope", "jti", "x5t", int64(1), int64(2))
	f.Fuzz(func(t *testing.T, iss, sub, aud, scope, jti, x5t string, iat, exp int64) {
		norm := func(s string) string { return string([]rune(s)) } // encoding/json's reading of bad UTF-8
		c := security.TokenClaims{Issuer: norm(iss), Subject: norm(sub), ClientID: norm(sub), Audience: []string{norm(aud), norm(sub)},
			Scope: norm(scope), IssuedAt: iat, Expiry: exp, ID: norm(jti)}
		if x5t != "" {
			c.Confirmation = &security.Confirmation{X5tS256: norm(x5t)}
		}
		checkClaims(t, c)
	})
}
