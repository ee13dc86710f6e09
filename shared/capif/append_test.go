package capif

import (
	"encoding/json"
	"testing"
)

func TestAccessTokenRspAppendJSON(t *testing.T) {
	for _, r := range []AccessTokenRsp{
		{AccessToken: "eyJ.a.b", TokenType: "Bearer", ExpiresIn: 3600, Scope: "3gpp#aef1:alpha"},
		{AccessToken: "t", TokenType: "Bearer", ExpiresIn: 0},
		{AccessToken: `q"\<&>` + "\u2028", TokenType: "é", ExpiresIn: -1, Scope: "s"},
	} {
		got := r.AppendJSON(nil)
		want, _ := json.Marshal(&r)
		var a, b map[string]any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		_ = json.Unmarshal(want, &b)
		if len(a) != len(b) {
			t.Errorf("%s has %d members, encoding/json's %s %d", got, len(a), want, len(b))
		}
		for k, v := range b {
			if a[k] != v {
				t.Errorf("%s: %s = %v, encoding/json's %v", got, k, a[k], v)
			}
		}
	}
}
