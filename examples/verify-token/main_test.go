package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/examples/internal/ccftest"
	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
)

func TestVerify(t *testing.T) {
	ccf := ccftest.Start(t)
	aefCert, aefKey, _ := ccf.Client("aef-1")
	inv1, _, invoker1 := ccf.Client("invoker-1")
	inv2, _, _ := ccf.Client("invoker-2")
	token := ccf.Token("3gpp#aef-1:monitoring-event", invoker1)
	o := options{jwksURL: ccf.URL + httpapi.JWKSPath, caFile: filepath.Join(ccf.Dir, devpki.CAFile), certFile: aefCert, keyFile: aefKey,
		issuer: ccftest.Issuer, aefID: "aef-1", api: "monitoring-event"}

	for _, tc := range []struct {
		name    string
		mutate  func(*options)
		refusal int // 0: valid
	}{
		{"binding not checked", nil, 0},
		{"bound to the invoker's certificate", func(o *options) { o.boundTo = inv1 }, 0},
		{"replayed from another certificate", func(o *options) { o.boundTo = inv2 }, 401},
		{"another API", func(o *options) { o.api = "qos-session" }, 403},
		{"another AEF", func(o *options) { o.aefID = "aef-2" }, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := o
			if tc.mutate != nil {
				tc.mutate(&o)
			}
			claims, err := verify(o, token)
			var e *aefauth.Error
			switch {
			case tc.refusal == 0 && (err != nil || claims.Subject != "invoker-1"):
				t.Fatalf("verify = %+v, %v", claims, err)
			case tc.refusal != 0 && (!errors.As(err, &e) || e.Status != tc.refusal):
				t.Fatalf("verify = %v, want a %d refusal", err, tc.refusal)
			}
		})
	}
}

// TestVerifyRS256: an RS256 token of the CCF's RSA key verifies as an ES256 one does; RS256
// under the EC key's kid, PS256 and HS256 keyed with the RSA modulus are refused.
func TestVerifyRS256(t *testing.T) {
	ccf := ccftest.Start(t)
	aefCert, aefKey, _ := ccf.Client("aef-1")
	inv1, _, invoker1 := ccf.Client("invoker-1")
	o := options{jwksURL: ccf.URL + httpapi.JWKSPath, caFile: filepath.Join(ccf.Dir, devpki.CAFile), certFile: aefCert, keyFile: aefKey,
		issuer: ccftest.Issuer, aefID: "aef-1", api: "monitoring-event", boundTo: inv1}
	claims := ccftest.Claims("3gpp#aef-1:monitoring-event", invoker1)
	forge := func(alg, kid string, m jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims{"iss": claims.Issuer, "sub": claims.Subject, "aud": claims.Audience, "scope": claims.Scope,
			"iat": claims.IssuedAt, "exp": claims.Expiry, "cnf": map[string]string{"x5t#S256": claims.Confirmation.X5tS256}})
		tok.Header["kid"], tok.Header["typ"] = kid, "at+jwt"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	esKid := ""
	if head, _, ok := strings.Cut(ccf.Token("3gpp#aef-1:monitoring-event", invoker1), "."); ok {
		var h map[string]string
		b, _ := base64.RawURLEncoding.DecodeString(head)
		_ = json.Unmarshal(b, &h)
		esKid = h["kid"]
	}
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"RS256", ccf.TokenAlg(capif.RS256, "3gpp#aef-1:monitoring-event", invoker1), true},
		{"RS256 under the EC key's kid", forge("RS256", esKid, jwt.SigningMethodRS256, ccf.RSAKey), false},
		{"PS256", forge("PS256", ccf.RSAKid(), jwt.SigningMethodPS256, ccf.RSAKey), false},
		{"HS256 keyed with the RSA modulus", forge("HS256", ccf.RSAKid(), jwt.SigningMethodHS256, ccf.RSAKey.N.Bytes()), false},
	} {
		_, err := verify(o, tc.token)
		var e *aefauth.Error
		if tc.ok != (err == nil) || !tc.ok && (!errors.As(err, &e) || e.Status != 401) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
