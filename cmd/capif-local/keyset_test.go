package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/local"
)

// TestKeySetRotation: capif-admin keys rotate, retire and retire -now change the key set of a
// runner while an AEF on aefauth verifies every token issued: a published key waits, a key
// that never signed leaves at once, and retire -now hands signing to the waiting key, the old
// kid gone from the JWKS. With -signer kms-envelope on DynamoDB, capif-admin changes the set of
// the running runner, which reads it again within -keyset-refresh; with -signer local on the
// embedded store the runner holds the store's lock, so capif-admin runs while it is stopped and
// the runner restarts on the same data directory.
func TestKeySetRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds capif-admin")
	}
	adminBin := filepath.Join(t.TempDir(), "capif-admin")
	if out, err := exec.Command("go", "build", "-o", adminBin, "../capif-admin").CombinedOutput(); err != nil {
		t.Fatalf("building capif-admin: %v\n%s", err, out)
	}
	for _, name := range []string{"embedded+local", "dynamodb+kms-envelope"} {
		b := backends[slices.IndexFunc(backends, func(b backend) bool { return b.name == name })]
		t.Run(name, func(t *testing.T) { testKeySetRotation(t, b, adminBin) })
	}
}

func testKeySetRotation(t *testing.T, b backend, adminBin string) {
	const refresh, refetch = time.Second, 100 * time.Millisecond
	r := startRunner(t, b, "-keyset-refresh", refresh.String())
	embedded := r.cfg.Store == settings.StoreEmbedded
	var backEnd []string // the runner's store and wrapping key
	for i := 0; i+1 < len(r.baseArgs); i++ {
		if f := r.baseArgs[i]; f == "-store" || f == "-table-prefix" || f == "-kms-wrapping-key" {
			backEnd = append(backEnd, f, r.baseArgs[i+1])
		}
	}
	if embedded {
		backEnd = append(backEnd, "-data", r.dataDir)
	}

	inv := r.freshInvoker(t)
	wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	cert, _ := r.certs.Load(inv)
	leaf := cert.(tls.Certificate).Leaf

	// The runner serving now (a restart gives it another port), and the AEF's client of it: the
	// AEF's JWKS requests go to it, through its checking client (its access log counts them).
	cur := r
	var aefClient atomic.Pointer[client]
	aefClient.Store(r.as(t, aefA))
	toCurrent := &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c := aefClient.Load()
		u, err := url.Parse(c.r.url)
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host, req.Host = u.Scheme, u.Host, ""
		return c.hc.Transport.RoundTrip(req)
	})}
	// keys runs capif-admin keys commands on the runner's key set and returns their outputs once
	// the runner signs from the set they leave.
	keys := func(cmds ...[]string) []string {
		t.Helper()
		if embedded {
			if err := cur.stop(t); err != nil {
				t.Fatal(err)
			}
		}
		var outs []string
		for _, args := range cmds {
			out, err := exec.Command(adminBin, append(append(slices.Clone(backEnd), "keys"), args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("capif-admin keys %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			outs = append(outs, string(out))
		}
		if embedded {
			cur = cur.restart(t, "-keyset-refresh", refresh.String())
			cur.certs.Store(inv, cert)
			aefClient.Store(cur.as(t, aefA))
			time.Sleep(refetch) // an AEF that meets a new kid may fetch the JWKS again
		} else {
			time.Sleep(refresh + 100*time.Millisecond) // the runner reads the set again
		}
		return outs
	}
	published := regexp.MustCompile(`published (k-\d{8}-[0-9a-f]{8}) `)
	newKid := func(out string) string {
		t.Helper()
		m := published.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("keys rotate named no new kid:\n%s", out)
		}
		return m[1]
	}

	newVerifier := func() *aefauth.Verifier {
		v, err := aefauth.New(aefauth.Config{JWKSURL: r.url + "/.well-known/jwks.json", Client: toCurrent,
			Issuer: "https://ccf.test", AefID: aefA, RefetchInterval: refetch})
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
		resp := cur.as(t, inv).tokenReq(inv, grant(inv))
		wantStatus(t, resp, http.StatusOK)
		tok := decode[capif.AccessTokenRsp](t, resp).AccessToken
		if err := verify(aef, tok); err != nil {
			t.Fatalf("the AEF refuses a fresh token: %v", err)
		}
		return tok, kidOf(t, tok)
	}
	jwksKids := func() []string {
		var kids []string
		for _, k := range cur.jwks(t) {
			kids = append(kids, k["kid"].(string))
		}
		return kids
	}

	first, k1 := token() // the runner's first key, published at its start
	if !strings.HasPrefix(k1, "k-") || !slices.Equal(jwksKids(), []string{k1}) {
		t.Fatalf("first key %s, JWKS %v", k1, jwksKids())
	}
	k2 := newKid(keys([]string{"rotate"})[0])
	if _, kid := token(); kid != k1 {
		t.Errorf("right after keys rotate, signed by %s: the new key must wait", kid)
	}
	if got := jwksKids(); !slices.Equal(got, []string{k1, k2}) {
		t.Errorf("JWKS after rotate %v, want the signing key then the waiting one", got)
	}
	keys([]string{"retire", k2}) // never signed: leaves at once
	if got := jwksKids(); !slices.Equal(got, []string{k1}) {
		t.Errorf("JWKS after retiring the waiting key %v", got)
	}
	if _, kid := token(); kid != k1 {
		t.Errorf("after retiring the waiting key, signed by %s, want %s", kid, k1)
	}
	k3 := newKid(keys([]string{"rotate"}, []string{"retire", "-now", k1})[0])
	if _, kid := token(); kid != k3 {
		t.Errorf("after retire -now %s, signed by %s, want %s", k1, kid, k3)
	}
	if got := jwksKids(); !slices.Equal(got, []string{k3}) {
		t.Errorf("JWKS after retire -now %v", got)
	}
	if err := verify(newVerifier(), first); err == nil {
		t.Error("a token of the key retired -now still verifies with a fresh JWKS")
	}
	list := keys([]string{"list"})[0]
	for _, want := range []string{k3 + "  ES256  wrapped  active", k1 + "  ES256  wrapped  retired"} {
		if !strings.Contains(regexp.MustCompile(` +`).ReplaceAllString(list, "  "), want) {
			t.Errorf("keys list lacks %q:\n%s", want, list)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestLocalSignerImportsPEMKeys: a data directory of a build before the key set, with both PEM
// keys: the runner started with -token-alg RS256 signs with the RS256 key and publishes both
// under the kids they had (their thumbprints), so a token the older build issued still
// verifies at an AEF. The PEM files stay, the wrapping key file is 0600, and a restart with
// -token-alg ES256 imports nothing again: it publishes a new ES256 key that signs at once.
func TestLocalSignerImportsPEMKeys(t *testing.T) {
	b := backends[slices.IndexFunc(backends, func(b backend) bool { return b.name == "embedded+local" })]
	dataDir := filepath.Join(t.TempDir(), "data")
	es, err := local.Open(dataDir, capif.ES256)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := local.Open(dataDir, capif.RS256)
	if err != nil {
		t.Fatal(err)
	}
	regPath := filepath.Join(t.TempDir(), "registry.json")
	raw, err := json.Marshal(testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r := launch(t, b, b.args(t), dataDir, []string{"-registry", regPath, "-token-alg", "RS256"})
	inv := r.freshInvoker(t)
	ss := serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH"))
	wantStatus(t, r.as(t, inv).create(inv, ss), http.StatusCreated)
	cert, _ := r.certs.Load(inv)
	leaf := cert.(tls.Certificate).Leaf
	// A token the older build issued with its ES256 key: the runner's claims, bound to inv.
	now := time.Now()
	old, err := es.Sign(t.Context(), capif.TokenClaims{Issuer: "https://ccf.test", Subject: inv, ClientID: inv, Audience: []string{aefA},
		Scope: "3gpp#aef-a:alpha-one", IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(), ID: rand.Text(),
		Confirmation: &capif.Confirmation{X5tS256: capif.CertThumbprint(leaf.Raw)}})
	if err != nil {
		t.Fatal(err)
	}
	resp := r.as(t, inv).tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	fresh := decode[capif.AccessTokenRsp](t, resp).AccessToken
	if kidOf(t, fresh) != rs.KeyID() {
		t.Errorf("signed by %s, want the RS256 PEM key's kid %s", kidOf(t, fresh), rs.KeyID())
	}
	var kids []string
	for _, k := range r.jwks(t) {
		kids = append(kids, k["kid"].(string))
	}
	if !slices.Equal(kids, []string{rs.KeyID(), es.KeyID()}) {
		t.Errorf("JWKS kids %v, want the RS256 key's then the ES256 key's %v", kids, []string{rs.KeyID(), es.KeyID()})
	}
	v, err := aefauth.New(aefauth.Config{JWKSURL: r.url + "/.well-known/jwks.json", Client: r.as(t, aefA).hc, Issuer: "https://ccf.test", AefID: aefA})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"issued by the older build": old, "issued now": fresh} {
		req := httptest.NewRequest(http.MethodGet, "https://aef.test/alpha-one/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
		if _, err := v.For("alpha-one").Verify(t.Context(), req); err != nil {
			t.Errorf("the token %s: %v", name, err)
		}
	}
	for _, name := range []string{"signing-key.pem", "signing-key-rs256.pem"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("the PEM key %s was not kept: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dataDir, fullapp.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Errorf("the wrapping key file: %v, %v", fi, err)
	}

	r2 := r.restart(t, "-token-alg", "ES256")
	r2.certs.Store(inv, cert)
	resp = r2.as(t, inv).tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	after := decode[capif.AccessTokenRsp](t, resp).AccessToken
	if kid := kidOf(t, after); !strings.HasPrefix(kid, "k-") {
		t.Errorf("after the restart with ES256, signed by %s, want a new key of the set", kid)
	}
	if alg := jwsAlg(t, after); alg != capif.ES256 {
		t.Errorf("after the restart with ES256: %s", alg)
	}
	kids = kids[:0]
	for _, k := range r2.jwks(t) {
		kids = append(kids, k["kid"].(string))
	}
	if !slices.Equal(kids, []string{kidOf(t, after), rs.KeyID(), es.KeyID()}) {
		t.Errorf("JWKS kids after the restart %v, want the new key, then the RS256 and ES256 PEM keys", kids)
	}
}

// jwsAlg is the alg of a token's header.
func jwsAlg(t testing.TB, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Alg string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Alg
}
