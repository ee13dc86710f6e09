package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/local"
)

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := devpki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	write := func(id string) (certFile, keyFile string, issued *devpki.Issued) {
		issued, err := ca.Client(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		if os.WriteFile(certFile, issued.CertPEM, 0o600) != nil || os.WriteFile(keyFile, issued.KeyPEM, 0o600) != nil {
			t.Fatal("writing certificates")
		}
		return certFile, keyFile, issued
	}
	aefCert, aefKey, _ := write("aef-1")
	inv1, _, invoker1 := write("invoker-1")
	inv2, _, _ := write("invoker-2")

	signer, err := local.Generate()
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := signer.JWKS(t.Context())
	ccf := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = json.NewEncoder(w).Encode(jwks) }))
	serverCert, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ccf.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	ccf.Config.ErrorLog = log.New(io.Discard, "", 0)
	ccf.StartTLS()
	defer ccf.Close()

	now := time.Now().Unix()
	token, err := signer.Sign(t.Context(), security.TokenClaims{
		Issuer: "https://ccf.test", Subject: "invoker-1", ClientID: "invoker-1", Audience: []string{"aef-1"},
		Scope: "3gpp#aef-1:monitoring-event", IssuedAt: now, Expiry: now + 300, ID: "jti-1",
		Confirmation: &security.Confirmation{X5tS256: security.CertThumbprint(invoker1.TLS.Leaf.Raw)},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := options{jwksURL: ccf.URL + "/.well-known/jwks.json", caFile: filepath.Join(dir, devpki.CAFile), certFile: aefCert, keyFile: aefKey,
		issuer: "https://ccf.test", aefID: "aef-1", api: "monitoring-event"}

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
