package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
)

// TestKeySetRotation: on a running runner with -signer kms-envelope on DynamoDB, capif-admin
// keys rotate, retire and retire -now change the key set while an AEF on aefauth verifies every
// token issued: a published key waits, a key that never signed leaves at once, and retire -now
// hands signing to the waiting key within -keyset-refresh, the old kid gone from the JWKS.
func TestKeySetRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds capif-admin")
	}
	i := slices.IndexFunc(backends, func(b backend) bool { return b.name == "dynamodb+kms-envelope" })
	b := backends[i]
	adminBin := filepath.Join(t.TempDir(), "capif-admin")
	if out, err := exec.Command("go", "build", "-o", adminBin, "../capif-admin").CombinedOutput(); err != nil {
		t.Fatalf("building capif-admin: %v\n%s", err, out)
	}
	const refresh = time.Second
	r := startRunner(t, b, "-keyset-refresh", refresh.String())
	var backEnd []string // the runner's tables and wrapping key
	for i := 0; i+1 < len(r.baseArgs); i++ {
		if f := r.baseArgs[i]; f == "-store" || f == "-table-prefix" || f == "-kms-wrapping-key" {
			backEnd = append(backEnd, f, r.baseArgs[i+1])
		}
	}
	admin := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(adminBin, append(slices.Clone(backEnd), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("capif-admin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	published := regexp.MustCompile(`published (k-\d{8}-[0-9a-f]{8}) `)
	rotate := func() string {
		t.Helper()
		m := published.FindStringSubmatch(admin("keys", "rotate"))
		if m == nil {
			t.Fatal("keys rotate named no new kid")
		}
		return m[1]
	}

	inv := r.freshInvoker(t)
	wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	cert, _ := r.certs.Load(inv)
	leaf := cert.(tls.Certificate).Leaf
	newVerifier := func() *aefauth.Verifier {
		v, err := aefauth.New(aefauth.Config{JWKSURL: r.url + "/.well-known/jwks.json", Client: r.as(t, aefA).hc,
			Issuer: "https://ccf.test", AefID: aefA, RefetchInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	aef := newVerifier() // one AEF, its cache warm throughout
	verify := func(v *aefauth.Verifier, tok string) error {
		req := httptest.NewRequest(http.MethodGet, "https://aef.test/alpha-one/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
		_, err := v.For("alpha-one").Verify(t.Context(), req)
		return err
	}
	token := func() (string, string) {
		t.Helper()
		resp := r.as(t, inv).tokenReq(inv, grant(inv))
		wantStatus(t, resp, http.StatusOK)
		tok := decode[capif.AccessTokenRsp](t, resp).AccessToken
		if err := verify(aef, tok); err != nil {
			t.Fatalf("the AEF refuses a fresh token: %v", err)
		}
		head, _, _ := strings.Cut(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(head)
		var h struct{ Kid string }
		_ = json.Unmarshal(raw, &h)
		return tok, h.Kid
	}
	jwksKids := func() []string {
		var kids []string
		for _, k := range r.jwks(t) {
			kids = append(kids, k["kid"].(string))
		}
		return kids
	}

	first, k1 := token() // the runner's first key, published at its start
	if !strings.HasPrefix(k1, "k-") || !slices.Equal(jwksKids(), []string{k1}) {
		t.Fatalf("first key %s, JWKS %v", k1, jwksKids())
	}
	k2 := rotate()
	time.Sleep(refresh + 100*time.Millisecond) // the runner reads the set again
	if _, kid := token(); kid != k1 {
		t.Errorf("right after keys rotate, signed by %s: the new key must wait", kid)
	}
	if got := jwksKids(); !slices.Equal(got, []string{k1, k2}) {
		t.Errorf("JWKS after rotate %v, want the signing key then the waiting one", got)
	}
	admin("keys", "retire", k2) // never signed: leaves at once
	time.Sleep(refresh + 100*time.Millisecond)
	if got := jwksKids(); !slices.Equal(got, []string{k1}) {
		t.Errorf("JWKS after retiring the waiting key %v", got)
	}
	k3 := rotate()
	admin("keys", "retire", "-now", k1)
	time.Sleep(refresh + 100*time.Millisecond)
	if _, kid := token(); kid != k3 {
		t.Errorf("after retire -now %s, signed by %s, want %s", k1, kid, k3)
	}
	if got := jwksKids(); !slices.Equal(got, []string{k3}) {
		t.Errorf("JWKS after retire -now %v", got)
	}
	if err := verify(newVerifier(), first); err == nil {
		t.Error("a token of the key retired -now still verifies with a fresh JWKS")
	}
	list := admin("keys", "list")
	for _, want := range []string{k3 + "  ES256  wrapped  active", k1 + "  ES256  wrapped  retired"} {
		if !strings.Contains(regexp.MustCompile(` +`).ReplaceAllString(list, "  "), want) {
			t.Errorf("keys list lacks %q:\n%s", want, list)
		}
	}
}
