package envelope

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/signer/kms"
	"github.com/capifcore/capif-security/shared/signer/local"
	"github.com/capifcore/capif-security/shared/signer/signertest"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

var windows = security.KeyWindows{Refresh: time.Minute, JWKSMaxAge: 5 * time.Minute, TokenLifetime: 10 * time.Minute}

// counting is a Wrapper that counts unwraps per kid and can be made to fail them.
type counting struct {
	Wrapper
	mu      sync.Mutex
	unwraps map[string]int
	fail    bool
}

func (c *counting) Unwrap(ctx context.Context, kid string, wrapped []byte) (crypto.Signer, error) {
	c.mu.Lock()
	c.unwraps[kid]++
	fail := c.fail
	c.mu.Unlock()
	if fail {
		return nil, errors.New("kms: Decrypt throttled")
	}
	return c.Wrapper.Unwrap(ctx, kid, wrapped)
}

type signerEnv struct {
	t     *testing.T
	keys  *embedded.DB
	wrap  *counting
	clock *securitytest.Clock
	logs  *bytes.Buffer
	s     *Signer
}

func newSignerEnv(t *testing.T, fallback security.Signer) *signerEnv {
	t.Helper()
	db, file := openTestSet(t)
	e := &signerEnv{t: t, keys: db, wrap: &counting{Wrapper: file, unwraps: map[string]int{}},
		clock: securitytest.NewClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)), logs: &bytes.Buffer{}}
	var err error
	e.s, err = New(Config{Keys: db, Wrapper: e.wrap, Windows: windows, Fallback: fallback, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// publish adds a new key to the stored set now and returns its kid.
func (e *signerEnv) publish() string {
	e.t.Helper()
	rec, err := NewRecord(e.t.Context(), e.wrap.Wrapper, capif.ES256, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	set, err := e.keys.LoadKeySet(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	if set, err = set.Publish(rec, e.clock.Now(), windows); err != nil {
		e.t.Fatal(err)
	}
	if err := e.keys.SaveKeySet(e.t.Context(), set); err != nil {
		e.t.Fatal(err)
	}
	return rec.Kid
}

func claims() capif.TokenClaims {
	now := time.Now().Unix()
	return capif.TokenClaims{Issuer: "ccf", Subject: "inv", ClientID: "inv", Audience: []string{"aef-1"},
		Scope: "3gpp#aef-1:api", IssuedAt: now, Expiry: now + 300, ID: "jti"}
}

// signedBy signs a token and verifies it against the Signer's own JWKS with golang-jwt; it
// returns the token's kid.
func (e *signerEnv) signedBy() string {
	e.t.Helper()
	tok, err := e.s.Sign(e.t.Context(), claims())
	if err != nil {
		e.t.Fatalf("Sign: %v", err)
	}
	jwks, err := e.s.JWKS(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	parsed, _, err := signertest.Parse(tok, jwks)
	if err != nil {
		e.t.Fatalf("the token does not verify against the JWKS: %v", err)
	}
	return parsed.Header["kid"].(string)
}

func jwksKids(t *testing.T, s *Signer) []string {
	t.Helper()
	set, err := s.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// TestSignerFallback: while the set is empty every call goes to the fallback; the first key
// written is picked up at the next refresh, and its kid replaces the fallback's.
func TestSignerFallback(t *testing.T) {
	legacy, err := local.Generate()
	if err != nil {
		t.Fatal(err)
	}
	legacyJWKS, _ := legacy.JWKS(t.Context())
	e := newSignerEnv(t, legacy)
	if kid := e.signedBy(); kid != legacyJWKS.Keys[0].Kid {
		t.Fatalf("an empty set signed with %s, not the fallback", kid)
	}
	k1 := e.publish()
	if kid := e.signedBy(); kid != legacyJWKS.Keys[0].Kid {
		t.Errorf("the set was read again before Refresh: %s", kid)
	}
	e.clock.Advance(windows.Refresh)
	if kid := e.signedBy(); kid != k1 {
		t.Errorf("after Refresh: %s, want %s", kid, k1)
	}

	bare := newSignerEnv(t, nil)
	if _, err := bare.s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
		t.Errorf("an empty set without a fallback: %v, want ErrUnavailable", err)
	}
	if got := jwksKids(t, bare.s); len(got) != 0 {
		t.Errorf("an empty set's JWKS: %v", got)
	}
}

// TestSignerRotation: one unwrap per kid; the new key is published before it signs, the old one
// after; JWKS costs no unwrap.
func TestSignerRotation(t *testing.T) {
	e := newSignerEnv(t, nil)
	k1 := e.publish()
	for range 3 {
		if kid := e.signedBy(); kid != k1 {
			t.Fatalf("signed with %s, want %s", kid, k1)
		}
	}
	e.clock.Advance(24 * time.Hour)
	k2 := e.publish()
	e.clock.Advance(windows.Refresh)
	if kid := e.signedBy(); kid != k1 || strings.Join(jwksKids(t, e.s), ",") != k1+","+k2 {
		t.Errorf("before activation: signed %s, JWKS %v", kid, jwksKids(t, e.s))
	}
	e.clock.Advance(windows.ActivationDelay())
	if kid := e.signedBy(); kid != k2 || strings.Join(jwksKids(t, e.s), ",") != k2+","+k1 {
		t.Errorf("after activation: signed %s, JWKS %v", kid, jwksKids(t, e.s))
	}
	e.clock.Advance(windows.Overlap())
	if got := jwksKids(t, e.s); strings.Join(got, ",") != k2 {
		t.Errorf("after the overlap: JWKS %v", got)
	}
	if e.wrap.unwraps[k1] != 1 || e.wrap.unwraps[k2] != 1 {
		t.Errorf("unwraps %v, want one per kid", e.wrap.unwraps)
	}
}

// TestSignerUnwrapFails: a new signing key that does not unwrap leaves the previous one signing
// (WARN, retried every retryAfter) for as long as its tokens stay verifiable, then
// ErrUnavailable; a record whose private key is not its published key never signs.
func TestSignerUnwrapFails(t *testing.T) {
	e := newSignerEnv(t, nil)
	k1 := e.publish()
	e.signedBy()
	k2 := e.publish()
	e.wrap.fail = true
	e.clock.Advance(windows.ActivationDelay())
	for range 3 {
		if kid := e.signedBy(); kid != k1 {
			t.Fatalf("signed with %s, want the previous key %s", kid, k1)
		}
	}
	if !strings.Contains(e.logs.String(), "level=WARN") || !strings.Contains(e.logs.String(), k2) || e.wrap.unwraps[k2] != 1 {
		t.Errorf("unwraps of %s: %d; logs:\n%s", k2, e.wrap.unwraps[k2], e.logs)
	}
	e.clock.Advance(retryAfter)
	e.signedBy()
	if e.wrap.unwraps[k2] != 2 {
		t.Errorf("not retried after retryAfter: %d", e.wrap.unwraps[k2])
	}
	// k1 leaves the JWKS at k2's activation + Overlap: a token it signed later than Refresh
	// after that activation would outlive it.
	e.clock.Advance(windows.Refresh - retryAfter + time.Second)
	if _, err := e.s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
		t.Errorf("with the previous key's tokens outliving it: %v, want ErrUnavailable", err)
	}
	e.wrap.fail = false
	e.clock.Advance(retryAfter) // the failure just now is not retried before
	if kid := e.signedBy(); kid != k2 {
		t.Errorf("once unwrapping works: %s", kid)
	}

	// A record whose public JWK is another key's.
	f := newSignerEnv(t, nil)
	f.publish()
	set, _ := f.keys.LoadKeySet(t.Context())
	other, _ := NewRecord(t.Context(), f.wrap.Wrapper, capif.ES256, f.clock.Now())
	other.PublicJWK.Kid = set.Keys[0].Kid
	set.Keys[0].PublicJWK = other.PublicJWK
	if err := f.keys.SaveKeySet(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
		t.Errorf("a record publishing another key: %v", err)
	}
}

// failingKeys is a key set whose reads can be made to fail.
type failingKeys struct {
	security.KeySet
	fail  bool
	reads int
}

func (f *failingKeys) LoadKeySet(ctx context.Context) (security.SigningKeys, error) {
	f.reads++
	if f.fail {
		return security.SigningKeys{}, errors.New("dynamodb: throttled")
	}
	return f.KeySet.LoadKeySet(ctx)
}

// TestSignerStaleSet: a set that cannot be read again is used, with a WARN, until it is
// MaxStale old, then nothing is signed; a cold start whose unwrap fails does not call again
// within retryAfter.
func TestSignerStaleSet(t *testing.T) {
	e := newSignerEnv(t, nil)
	e.publish()
	keys := &failingKeys{KeySet: e.keys}
	var err error
	e.s, err = New(Config{Keys: keys, Wrapper: e.wrap, Windows: windows, Now: e.clock.Now, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.signedBy()
	keys.fail = true
	e.clock.Advance(windows.Refresh)
	e.signedBy()
	if !strings.Contains(e.logs.String(), "could not be read") {
		t.Errorf("no WARN:\n%s", e.logs)
	}
	e.clock.Advance(windows.MaxStale() - windows.Refresh)
	if _, err := e.s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
		t.Errorf("a set MaxStale old: %v, want ErrUnavailable", err)
	}
	// A failed read is not tried again within retryAfter, whatever the traffic.
	reads := keys.reads
	keys.fail = false
	for range 5 {
		if _, err := e.s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
			t.Errorf("right after a failed read: %v, want ErrUnavailable", err)
		}
	}
	if keys.reads != reads {
		t.Errorf("%d reads within retryAfter of a failure", keys.reads-reads)
	}
	e.clock.Advance(retryAfter)
	e.signedBy()

	// A cold start whose read fails calls once per retryAfter too.
	coldKeys := &failingKeys{KeySet: e.keys, fail: true}
	coldSigner, err := New(Config{Keys: coldKeys, Wrapper: e.wrap, Windows: windows, Now: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := coldSigner.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
			t.Fatalf("cold start, read failing: %v", err)
		}
	}
	if coldKeys.reads != 1 {
		t.Errorf("cold start: %d reads within retryAfter, want 1", coldKeys.reads)
	}

	cold := newSignerEnv(t, nil)
	kid := cold.publish()
	cold.wrap.fail = true
	for range 5 {
		if _, err := cold.s.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) {
			t.Fatalf("cold start, unwrap failing: %v", err)
		}
	}
	if cold.wrap.unwraps[kid] != 1 {
		t.Errorf("%d unwraps within retryAfter, want 1", cold.wrap.unwraps[kid])
	}
}

// TestSignerKMSRecords: a record naming a KMS key (kms.Record, as keys import-env and keys add
// write it) signs through KMS with the key's id as kid, and a rotation to a wrapped key moves
// signing into memory; a signer without a wrapper (signer kms) refuses the wrapped key.
func TestSignerKMSRecords(t *testing.T) {
	client, wrappingKey := localKMS(t)
	out, err := client.CreateKey(t.Context(), &awskms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	keyID := aws.ToString(out.KeyMetadata.KeyId)
	rec, err := kms.Record(t.Context(), client, keyID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Kid != keyID || rec.Alg != capif.ES256 || !strings.HasSuffix(rec.KMSKeyID, ":key/"+keyID) {
		t.Fatalf("record %+v", rec)
	}
	e := newSignerEnv(t, nil)
	wrapper, err := NewKMS(client, wrappingKey, "stack-a")
	if err != nil {
		t.Fatal(err)
	}
	e.wrap.Wrapper = wrapper
	e.s.cfg.KMS = client
	set, _ := e.keys.LoadKeySet(t.Context())
	if set, err = set.Publish(rec, e.clock.Now(), windows); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.SaveKeySet(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	if kid := e.signedBy(); kid != keyID {
		t.Fatalf("signed by %s, want the KMS key %s", kid, keyID)
	}
	next := e.publish()
	e.clock.Advance(windows.ActivationDelay())
	if kid := e.signedBy(); kid != next {
		t.Fatalf("after the rotation: signed by %s, want %s", kid, next)
	}
	if got := jwksKids(t, e.s); !slices.Equal(got, []string{next, keyID}) {
		t.Errorf("JWKS %v", got)
	}
	kmsOnly, err := New(Config{Keys: e.keys, KMS: client, Windows: windows, Now: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kmsOnly.Sign(t.Context(), claims()); !errors.Is(err, security.ErrUnavailable) || !strings.Contains(err.Error(), "keys add") {
		t.Errorf("signer kms on a wrapped key: %v", err)
	}
}
