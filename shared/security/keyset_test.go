package security_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

var windows = security.KeyWindows{Refresh: time.Minute, JWKSMaxAge: 5 * time.Minute, TokenLifetime: 10 * time.Minute}

func keyRecord(kid string) security.SigningKey {
	return security.SigningKey{Kid: kid, Alg: capif.ES256, PublicJWK: capif.JWK{Kty: "EC", Kid: kid, Alg: capif.ES256}, WrappedKey: []byte("wrapped " + kid)}
}

func mustPublish(t *testing.T, s security.SigningKeys, kid string, now time.Time) security.SigningKeys {
	t.Helper()
	s, err := s.Publish(keyRecord(kid), now, windows)
	if err != nil {
		t.Fatalf("publish %s: %v", kid, err)
	}
	return s
}

func kids(keys []security.SigningKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Kid)
	}
	return out
}

func signer(s security.SigningKeys, now time.Time) string {
	k, _ := s.Signer(now)
	return k.Kid
}

// TestKeySetRotation: the first key signs at once; a second waits ActivationDelay, published
// beside the first; the first stays published for Overlap after the second took over, then
// leaves and is pruned.
func TestKeySetRotation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var s security.SigningKeys
	if !s.RotationDue(t0, 30*24*time.Hour) {
		t.Error("an empty set is not due a key")
	}
	s = mustPublish(t, s, "k1", t0)
	if got := signer(s, t0); got != "k1" {
		t.Fatalf("the first key does not sign at once: %q", got)
	}
	if s.RotationDue(t0.Add(29*24*time.Hour), 30*24*time.Hour) || !s.RotationDue(t0.Add(30*24*time.Hour), 30*24*time.Hour) {
		t.Error("RotationDue does not follow the signing key's age")
	}
	t1 := t0.Add(30 * 24 * time.Hour)
	s = mustPublish(t, s, "k2", t1)
	if s.RotationDue(t1.Add(time.Hour), 30*24*time.Hour) {
		t.Error("due again while a successor waits")
	}
	activate := t1.Add(windows.ActivationDelay())
	if windows.ActivationDelay() != security.MinActivationDelay {
		t.Errorf("ActivationDelay %s, want the 10 min floor for these windows", windows.ActivationDelay())
	}
	leaves := activate.Add(windows.Refresh + windows.TokenLifetime + capif.Leeway)
	for _, tc := range []struct {
		at        time.Time
		signer    string
		published []string
		k1        security.KeyState
	}{
		{t1, "k1", []string{"k1", "k2"}, security.KeyActive},
		{activate.Add(-time.Second), "k1", []string{"k1", "k2"}, security.KeyActive},
		{activate, "k2", []string{"k2", "k1"}, security.KeyPrevious},
		{leaves.Add(-time.Second), "k2", []string{"k2", "k1"}, security.KeyPrevious},
		{leaves, "k2", []string{"k2"}, security.KeyRetired},
	} {
		if got := signer(s, tc.at); got != tc.signer {
			t.Errorf("at %s: signer %s, want %s", tc.at.Sub(t1), got, tc.signer)
		}
		if got := kids(s.Published(tc.at, windows)); !slices.Equal(got, tc.published) {
			t.Errorf("at %s: published %v, want %v", tc.at.Sub(t1), got, tc.published)
		}
		if got := s.State(s.Keys[0], tc.at, windows); got != tc.k1 {
			t.Errorf("at %s: k1 %s, want %s", tc.at.Sub(t1), got, tc.k1)
		}
	}
	if _, changed := s.Prune(leaves.Add(-time.Second), windows); changed {
		t.Error("pruned a published key")
	}
	if p, changed := s.Prune(leaves, windows); !changed || !slices.Equal(kids(p.Keys), []string{"k2"}) || len(s.Keys) != 2 {
		t.Errorf("prune: %v %v (the original must be untouched: %v)", kids(p.Keys), changed, kids(s.Keys))
	}
}

// TestKeySetRetire: each kind of key, with and without -now.
func TestKeySetRetire(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	one := mustPublish(t, security.SigningKeys{}, "k1", t0)
	t1 := t0.Add(time.Hour)
	two := mustPublish(t, one, "k2", t1)
	activate := t1.Add(windows.ActivationDelay())
	invalidErr := func(err error) bool {
		var e *security.Error
		return errors.As(err, &e) && e.Kind == security.KindInvalid
	}

	// The signing key: refused without -now, and with -now while nothing can take over.
	if _, err := two.Retire("k1", t1, windows, false); !invalidErr(err) {
		t.Errorf("retiring the signing key: %v, want invalid", err)
	}
	if _, err := one.Retire("k1", t1, windows, true); !invalidErr(err) {
		t.Errorf("retire -now with no successor: %v, want invalid", err)
	}
	// -now with a successor waiting: it signs from now, and k1 leaves the JWKS now.
	s, err := two.Retire("k1", t1, windows, true)
	if err != nil || signer(s, t1) != "k2" || !slices.Equal(kids(s.Published(t1, windows)), []string{"k2"}) {
		t.Errorf("retire -now: %v; signer %s, published %v", err, signer(s, t1), kids(s.Published(t1, windows)))
	}
	// A key that never signed leaves at once, and does not count as k1's successor.
	s, err = two.Retire("k2", t1, windows, false)
	if err != nil || !slices.Equal(kids(s.Published(t1, windows)), []string{"k1"}) {
		t.Errorf("retire a waiting key: %v, published %v", err, kids(s.Published(t1, windows)))
	}
	if later := activate.Add(windows.Overlap() + time.Hour); signer(s, later) != "k1" || s.State(s.Keys[0], later, windows) != security.KeyActive {
		t.Errorf("after the waiting key was retired, k1 stopped signing: %s", signer(s, later))
	}
	// A previous key leaves at its earliest safe time already: retiring it changes nothing;
	// -now takes it out at once.
	after := activate.Add(time.Minute)
	s, err = two.Retire("k1", after, windows, false)
	if err != nil || !s.Keys[0].RetiredAt.IsZero() || !two.LeavesAt(two.Keys[0], after, windows).Equal(activate.Add(windows.Overlap())) {
		t.Errorf("retire a previous key: %v, RetiredAt %s", err, s.Keys[0].RetiredAt)
	}
	// A waiting key about to sign may already sign where the set is read late: refused.
	if _, err := two.Retire("k2", activate.Add(-windows.MaxStale()/2), windows, false); !invalidErr(err) {
		t.Errorf("retiring a key that activates within MaxStale: %v, want invalid", err)
	}
	s, err = two.Retire("k1", after, windows, true)
	if err != nil || !slices.Equal(kids(s.Published(after, windows)), []string{"k2"}) {
		t.Errorf("retire -now a previous key: %v, published %v", err, kids(s.Published(after, windows)))
	}
	if _, err := two.Retire("k9", t1, windows, false); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("an unknown kid: %v", err)
	}
	if !slices.Equal(kids(two.Keys), []string{"k1", "k2"}) || !two.Keys[0].RetiredAt.IsZero() {
		t.Error("Retire changed the set it was called on")
	}
}

// TestKeySetPublishRefuses records that are not one key of a known algorithm.
func TestKeySetPublishRefuses(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := mustPublish(t, security.SigningKeys{}, "k1", now)
	for name, mutate := range map[string]func(*security.SigningKey){
		"no kid":          func(k *security.SigningKey) { k.Kid, k.PublicJWK.Kid = "", "" },
		"JWK of another":  func(k *security.SigningKey) { k.PublicJWK.Kid = "k0" },
		"the kid again":   func(k *security.SigningKey) { k.Kid, k.PublicJWK.Kid = "k1", "k1" },
		"HS256":           func(k *security.SigningKey) { k.Alg, k.PublicJWK.Alg = "HS256", "HS256" },
		"JWK of RS256":    func(k *security.SigningKey) { k.PublicJWK.Alg = capif.RS256 },
		"no private half": func(k *security.SigningKey) { k.WrappedKey = nil },
		"both halves":     func(k *security.SigningKey) { k.KMSKeyID = "arn:aws:kms:eu-west-1:1:key/x" },
	} {
		k := keyRecord("k2")
		mutate(&k)
		if _, err := s.Publish(k, now, windows); err == nil {
			t.Errorf("%s: published", name)
		}
	}
}

// TestKeySetRotationIsInvisible walks a rotation in 10 s steps: every token any instance could
// sign (with a set read up to Refresh ago) verifies against every JWKS any verifier could hold
// until the token expires (fetched up to JWKSMaxAge ago, from an instance whose set was read up
// to Refresh before that).
func TestKeySetRotationIsInvisible(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	before := mustPublish(t, security.SigningKeys{}, "k1", t0.Add(-90*24*time.Hour))
	after := mustPublish(t, before, "k2", t0)
	pruned, changed := after.Prune(t0.Add(time.Hour), windows) // by the next day's rotation run
	if !changed {
		t.Fatal("k1 was not pruned an hour after the rotation")
	}
	setAt := func(r time.Time) security.SigningKeys {
		switch {
		case r.Before(t0):
			return before
		case r.Before(t0.Add(time.Hour)):
			return after
		}
		return pruned
	}
	const step = 10 * time.Second
	checked := 0
	for at := t0.Add(-time.Minute); at.Before(t0.Add(2 * time.Hour)); at = at.Add(step) {
		for read := at.Add(-windows.Refresh); !read.After(at); read = read.Add(step) {
			k, ok := setAt(read).Signer(at)
			if !ok {
				t.Fatalf("no key signs at %s", at.Sub(t0))
			}
			for v := at; !v.After(at.Add(windows.TokenLifetime + capif.Leeway)); v = v.Add(30 * time.Second) {
				for f := v.Add(-windows.JWKSMaxAge); !f.After(v); f = f.Add(30 * time.Second) {
					for r := f.Add(-windows.Refresh); !r.After(f); r = r.Add(30 * time.Second) {
						checked++
						if !slices.Contains(kids(setAt(r).Published(f, windows)), k.Kid) {
							t.Fatalf("a token of %s signed at %s (set read at %s) fails at %s against the JWKS served at %s (set read at %s)",
								k.Kid, at.Sub(t0), read.Sub(t0), v.Sub(t0), f.Sub(t0), r.Sub(t0))
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}
