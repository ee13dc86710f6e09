package main

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/capifcore/capif-security/examples/internal/ccftest"
	"github.com/capifcore/capif-security/shared/aefauth"
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
