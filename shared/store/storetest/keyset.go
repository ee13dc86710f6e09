package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// The KeySet port: Backend.KeySet must be a set of its own for each open (the suite's subtests
// run in parallel and each expects to start from an empty set).

var keyWindows = security.KeyWindows{Refresh: time.Minute, JWKSMaxAge: 5 * time.Minute, TokenLifetime: 10 * time.Minute}

func signingKey(kid string) security.SigningKey {
	return security.SigningKey{Kid: kid, Alg: capif.ES256, PublicJWK: capif.JWK{Kty: "EC", Crv: "P-256", X: "x-" + kid, Y: "y-" + kid, Kid: kid, Alg: capif.ES256, Use: "sig"},
		WrappedKey: []byte{0, 1, 2, 0xff}}
}

// publish loads the set, publishes kid into it and saves it, once; it returns the save's error.
func publish(t *testing.T, ks security.KeySet, kid string, now time.Time) error {
	t.Helper()
	s, err := ks.LoadKeySet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s, err = s.Publish(signingKey(kid), now, keyWindows); err != nil {
		t.Fatal(err)
	}
	return ks.SaveKeySet(t.Context(), s)
}

// testKeySetRoundTrip: a set never written is empty at version 0; every save bumps the version
// by one and reads back field for field (times to the nanosecond, in UTC).
func testKeySetRoundTrip(t *testing.T, b Backend) {
	ctx := t.Context()
	s, err := b.KeySet.LoadKeySet(ctx)
	if err != nil || s.Version != 0 || len(s.Keys) != 0 {
		t.Fatalf("a new set: %+v, %v", s, err)
	}
	now := time.Date(2026, 12, 4, 10, 11, 12, 123456789, time.UTC)
	want, err := s.Publish(signingKey("k1"), now, keyWindows)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.KeySet.SaveKeySet(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := b.KeySet.LoadKeySet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want.Version = 1
	equal(t, "the saved set", got, want)
	kms := signingKey("k2")
	kms.WrappedKey, kms.KMSKeyID = nil, "arn:aws:kms:eu-west-1:111122223333:key/"+newID("key")
	if want, err = got.Publish(kms, now.Add(time.Hour), keyWindows); err != nil {
		t.Fatal(err)
	}
	if want, err = want.Retire("k2", now.Add(time.Hour+time.Minute), keyWindows, false); err != nil {
		t.Fatal(err)
	}
	if err := b.KeySet.SaveKeySet(ctx, want); err != nil {
		t.Fatal(err)
	}
	want.Version = 2
	got, err = b.KeySet.LoadKeySet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "the set after a second save", got, want)
}

// testKeySetConflict: a save from a version that is no longer stored fails with ErrConflict
// and changes nothing, the first save included (a set that exists is not created again).
func testKeySetConflict(t *testing.T, b Backend) {
	ctx := t.Context()
	now := time.Now().UTC()
	if err := publish(t, b.KeySet, "k1", now); err != nil {
		t.Fatal(err)
	}
	for _, stale := range []int64{0, 2, 7} {
		s := security.SigningKeys{Version: stale, Keys: []security.SigningKey{signingKey("intruder")}}
		if err := b.KeySet.SaveKeySet(ctx, s); !errors.Is(err, security.ErrConflict) {
			t.Errorf("a save from version %d: %v, want ErrConflict", stale, err)
		}
	}
	s, err := b.KeySet.LoadKeySet(ctx)
	if err != nil || s.Version != 1 || len(s.Keys) != 1 || s.Keys[0].Kid != "k1" {
		t.Errorf("after the refused saves: %+v, %v", s, err)
	}
}

// testKeySetConcurrent: of Workers saves computed from the same version exactly one wins; and
// Workers writers that retry on ErrConflict all land, none lost.
func testKeySetConcurrent(t *testing.T, b Backend) {
	ctx := t.Context()
	now := time.Now().UTC()
	if err := publish(t, b.KeySet, "k0", now); err != nil {
		t.Fatal(err)
	}
	base, err := b.KeySet.LoadKeySet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, Workers)
	for i := range Workers {
		wg.Go(func() {
			s, err := base.Publish(signingKey(newID("once")), now, keyWindows)
			if err == nil {
				err = b.KeySet.SaveKeySet(ctx, s)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, security.ErrConflict):
			t.Errorf("a losing save: %v, want ErrConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d saves from version %d won, want exactly 1", won, base.Version)
	}
	const writers = 10 // each retries until it lands: n² attempts at worst
	kids := make([]string, writers)
	for i := range writers {
		kids[i] = newID("retry")
		wg.Go(func() {
			for attempt := 0; attempt < 10*writers; attempt++ {
				s, err := b.KeySet.LoadKeySet(ctx)
				if err == nil {
					if s, err = s.Publish(signingKey(kids[i]), now, keyWindows); err == nil {
						err = b.KeySet.SaveKeySet(ctx, s)
					}
				}
				if !errors.Is(err, security.ErrConflict) {
					errs[i] = err
					return
				}
			}
			errs[i] = errors.New("never landed")
		})
	}
	wg.Wait()
	s, err := b.KeySet.LoadKeySet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, kid := range kids {
		if errs[i] != nil || !slices.ContainsFunc(s.Keys, func(k security.SigningKey) bool { return k.Kid == kid }) {
			t.Errorf("writer %s: %v; in the set: %v", kid, errs[i], slices.ContainsFunc(s.Keys, func(k security.SigningKey) bool { return k.Kid == kid }))
		}
	}
	if want := base.Version + 1 + writers; s.Version != want || len(s.Keys) != 2+writers {
		t.Errorf("version %d with %d keys, want %d with %d", s.Version, len(s.Keys), want, 2+writers)
	}
}

// testKeySetBesideTheRegistry: the key set is not a registry record: Records, export and import
// -prune leave it alone, and it does not break them.
func testKeySetBesideTheRegistry(t *testing.T, b Backend) {
	ctx := t.Context()
	if err := publish(t, b.KeySet, "k1", time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	mustImport(t, b, f.doc)
	if _, err := b.Registry.Records(ctx); err != nil {
		t.Fatalf("Records beside a key set: %v", err)
	}
	if _, err := b.admin().ExportRegistry(ctx); err != nil {
		t.Fatalf("export beside a key set: %v", err)
	}
	if err := b.admin().Prune(ctx, security.Omitted{APIs: []string{f.api1, f.api2}, Invokers: []string{f.inv}, AEFs: []string{f.aef1, f.aef2}}); err != nil {
		t.Fatalf("prune: %v", err)
	}
	s, err := b.KeySet.LoadKeySet(ctx)
	if err != nil || s.Version != 1 || len(s.Keys) != 1 {
		t.Errorf("the key set after prune: %+v, %v", s, err)
	}
}
