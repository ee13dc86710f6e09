package local

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/signer"
	"github.com/capifcore/capif-security/shared/signer/signertest"
)

func claims(aud ...string) capif.TokenClaims {
	now := time.Now().Unix()
	return capif.TokenClaims{
		Issuer: "ccf", Subject: "inv", ClientID: "inv", Audience: aud,
		Scope: "3gpp#aef-1:api", IssuedAt: now, Expiry: now + 300, ID: "jti",
	}
}

// verify checks token against s's JWKS using only golang-jwt and crypto/ecdsa.
func verify(t *testing.T, s *Signer, token string) *jwt.Token {
	t.Helper()
	jwks, err := s.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := signertest.Parse(token, jwks)
	if err != nil {
		t.Fatalf("token does not verify from the JWKS: %v", err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	s, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	token, err := s.Sign(t.Context(), claims("aef-1"))
	if err != nil {
		t.Fatal(err)
	}
	tok := verify(t, s, token)
	if tok.Header["kid"] != s.KeyID() {
		t.Errorf("kid header = %v, want %s", tok.Header["kid"], s.KeyID())
	}
	jwks, _ := s.JWKS(t.Context())
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kid != s.KeyID() || jwks.Keys[0].Use != "sig" || jwks.Keys[0].Alg != "ES256" {
		t.Errorf("JWKS = %+v", jwks)
	}
	// kid is the RFC 7638 thumbprint of the published key.
	pub, err := signertest.PublicKey(jwks.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if tp, _ := signer.Thumbprint(pub); tp != s.KeyID() {
		t.Errorf("kid %s is not the thumbprint %s", s.KeyID(), tp)
	}
}

// A token from another key with the same kid must not verify: the JWKS really pins the key.
func TestForeignKeyDoesNotVerify(t *testing.T) {
	a, _ := Generate()
	b, _ := Generate()
	token, err := b.Sign(t.Context(), claims("aef-1"))
	if err != nil {
		t.Fatal(err)
	}
	jwksA, _ := a.JWKS(t.Context())
	jwksA.Keys[0].Kid = b.KeyID()
	if _, _, err := signertest.Parse(token, jwksA); err == nil {
		t.Fatal("a token verified with another key's JWK")
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "signing-key.pem")
	first, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %o, want 600", perm)
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode = %o, want 700", dir.Mode().Perm())
	}
	token, err := first.Sign(t.Context(), claims("aef-1"))
	if err != nil {
		t.Fatal(err)
	}

	// A restart: a new signer from the same file keeps the kid, and the earlier token verifies.
	second, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if second.KeyID() != first.KeyID() {
		t.Fatalf("kid changed across reload: %s → %s", first.KeyID(), second.KeyID())
	}
	verify(t, second, token)

	// Another file is another key.
	other, err := LoadOrCreate(filepath.Join(t.TempDir(), "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if other.KeyID() == first.KeyID() {
		t.Error("two files gave the same key")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the key dir holds %d entries, want only the key (no temporary files left)", len(entries))
	}
}

// Concurrent first starts must agree on one key rather than each writing its own.
func TestConcurrentCreateAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	const n = 8
	kids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = s.KeyID()
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if kids[i] != kids[0] {
			t.Fatalf("concurrent LoadOrCreate gave different keys: %v", kids)
		}
	}
}

func TestLoadAcceptsSEC1AndRefusesOthers(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, block *pem.Block) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	s, err := LoadOrCreate(write("sec1.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	if err != nil {
		t.Fatalf("SEC 1 key refused: %v", err)
	}
	if want, _ := signer.Thumbprint(&ec.PublicKey); s.KeyID() != want {
		t.Error("the SEC 1 key was not the one loaded")
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	bad := map[string]string{
		"P-384 key":   write("p384.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: p384der}),
		"not PEM":     filepath.Join(dir, "garbage.pem"),
		"certificate": write("cert.pem", &pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
	}
	if err := os.WriteFile(bad["not PEM"], []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, p := range bad {
		if _, err := LoadOrCreate(p); err == nil {
			t.Errorf("%s: loaded", name)
		}
		if b, _ := os.ReadFile(p); len(b) == 0 {
			t.Errorf("%s: the file was overwritten", name)
		}
	}
}

func TestNewRefusesOtherCurves(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := New(k); err == nil {
		t.Error("New accepted a P-384 key")
	}
	if _, err := New(nil); err == nil {
		t.Error("New accepted nil")
	}
}

func TestGlobalES256IsUntouched(t *testing.T) {
	s, _ := Generate()
	if _, err := s.Sign(t.Context(), claims("aef-1")); err != nil {
		t.Fatal(err)
	}
	if m, ok := jwt.GetSigningMethod("ES256").(*jwt.SigningMethodECDSA); !ok || m != jwt.SigningMethodES256 {
		t.Fatalf("the global ES256 method was replaced by %T", jwt.GetSigningMethod("ES256"))
	}
}

func BenchmarkSign(b *testing.B) {
	s, err := Generate()
	if err != nil {
		b.Fatal(err)
	}
	c := claims("aef-1", "aef-2")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(b.Context(), c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOpenBothAlgorithms: -token-alg RS256 creates signing-key-rs256.pem (RSA 2048, 0600) beside
// the ES256 key; every key file present is published, the chosen one signs, and the tokens of
// the other keep verifying across the switch (both ways).
func TestOpenBothAlgorithms(t *testing.T) {
	dir := t.TempDir()
	es, err := Open(dir, capif.ES256)
	if err != nil {
		t.Fatal(err)
	}
	esToken, err := es.Sign(t.Context(), claims("aef-1"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Open(dir, capif.RS256)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "signing-key-rs256.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the RS256 key file: %v", err)
	}
	rsToken, err := rs.Sign(t.Context(), claims("aef-1"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := rs.JWKS(t.Context())
	if len(jwks.Keys) != 2 || jwks.Keys[0].Alg != capif.RS256 || jwks.Keys[1].Alg != capif.ES256 {
		t.Fatalf("JWKS %+v, want the RS256 key then the ES256 one", jwks)
	}
	for name, tok := range map[string]string{"RS256": rsToken, "ES256 from before the switch": esToken} {
		if _, _, err := signertest.Parse(tok, jwks); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if h := strings.SplitN(rsToken, ".", 2)[0]; !strings.Contains(string(mustB64(t, h)), `"alg":"RS256"`) {
		t.Errorf("header %s", mustB64(t, h))
	}
	back, err := Open(dir, capif.ES256) // and back: the RS256 key stays published
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ = back.JWKS(t.Context())
	if _, _, err := signertest.Parse(rsToken, jwks); err != nil || back.KeyID() != es.KeyID() {
		t.Errorf("after switching back: %v, kid %s want %s", err, back.KeyID(), es.KeyID())
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func BenchmarkSignRS256(b *testing.B) {
	s, err := Open(b.TempDir(), capif.RS256)
	if err != nil {
		b.Fatal(err)
	}
	c := claims("aef-1", "aef-2")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(b.Context(), c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeys: the key files present, the one of the asked algorithm first, none created; a file
// holding a key of the other algorithm is refused.
func TestKeys(t *testing.T) {
	dir := t.TempDir()
	if keys, err := Keys(dir, capif.RS256); err != nil || len(keys) != 0 {
		t.Fatalf("empty directory: %d keys, %v", len(keys), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Keys created %v", entries)
	}
	es, err := Open(dir, capif.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := Keys(dir, capif.RS256); err != nil || len(keys) != 1 || signer.AlgOf(keys[0].Public()) != capif.ES256 {
		t.Fatalf("the ES256 file only: %v, %v", keys, err)
	}
	rs, err := Open(dir, capif.RS256)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := Keys(dir, capif.RS256)
	if err != nil || len(keys) != 2 {
		t.Fatalf("both files: %d keys, %v", len(keys), err)
	}
	for i, want := range []string{rs.KeyID(), es.KeyID()} {
		if kid, _ := signer.Thumbprint(keys[i].Public()); kid != want {
			t.Errorf("key %d: kid %s, want %s", i, kid, want)
		}
	}
	if err := os.Rename(filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "signing-key-rs256.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := Keys(dir, capif.ES256); err == nil {
		t.Error("an ES256 key in signing-key-rs256.pem was accepted")
	}
}
