package envelope

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// openTestSet is a key set in a fresh embedded store, and a key file to wrap its keys.
func openTestSet(t *testing.T) (*embedded.DB, *KeyFile) {
	t.Helper()
	dir := t.TempDir()
	db, err := embedded.Open(filepath.Join(dir, "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	file, err := OpenKeyFile(filepath.Join(dir, "wrapping.key"), "local")
	if err != nil {
		t.Fatal(err)
	}
	return db, file
}

func newManager(t *testing.T) (Manager, *securitytest.Clock) {
	t.Helper()
	db, file := openTestSet(t)
	clock := securitytest.NewClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	return Manager{Keys: db, Wrapper: file, Alg: capif.ES256, Windows: windows, Now: clock.Now}, clock
}

func states(t *testing.T, m Manager) map[string]security.KeyState {
	t.Helper()
	set, err := m.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]security.KeyState{}
	for _, k := range set.Keys {
		out[k.Kid] = set.State(k, m.now(), m.Windows)
	}
	return out
}

// TestManagerBootstrapOnce: processes starting together on an empty set agree on one first key,
// which signs at once; later starts make none.
func TestManagerBootstrapOnce(t *testing.T) {
	m, _ := newManager(t)
	var wg sync.WaitGroup
	kids := make([]string, 4)
	made := make([]bool, 4)
	for i := range kids {
		wg.Go(func() {
			var err error
			if kids[i], made[i], err = m.Bootstrap(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if slices.Compact(slices.Clone(kids))[0] != kids[0] || len(slices.Compact(slices.Clone(kids))) != 1 {
		t.Fatalf("bootstraps disagree: %v", kids)
	}
	if n := len(slices.DeleteFunc(slices.Clone(made), func(b bool) bool { return !b })); n != 1 {
		t.Errorf("%d bootstraps made a key, want 1", n)
	}
	if got := states(t, m); len(got) != 1 || got[kids[0]] != security.KeyActive {
		t.Errorf("states %v", got)
	}
}

// TestManagerScheduled: the rotation function's day by day: nothing while the key is young, a
// successor once it is old, which takes over after the activation delay; the old record is
// dropped once it left the JWKS.
func TestManagerScheduled(t *testing.T) {
	m, clock := newManager(t)
	const age = 30 * 24 * time.Hour
	first, _, err := m.Scheduled(t.Context(), age)
	if err != nil || first == "" {
		t.Fatalf("first run on an empty set: %q, %v", first, err)
	}
	clock.Advance(24 * time.Hour)
	if kid, pruned, err := m.Scheduled(t.Context(), age); kid != "" || pruned || err != nil {
		t.Fatalf("young key: published %q, pruned %v, %v", kid, pruned, err)
	}
	clock.Advance(age)
	next, _, err := m.Scheduled(t.Context(), age)
	if err != nil || next == "" {
		t.Fatalf("old key: %q, %v", next, err)
	}
	if got := states(t, m); got[first] != security.KeyActive || got[next] != security.KeyPending {
		t.Errorf("after publishing: %v", got)
	}
	if kid, _, _ := m.Scheduled(t.Context(), age); kid != "" {
		t.Errorf("a successor is waiting, yet %s was published", kid)
	}
	clock.Advance(windows.ActivationDelay())
	if got := states(t, m); got[first] != security.KeyPrevious || got[next] != security.KeyActive {
		t.Errorf("after activation: %v", got)
	}
	clock.Advance(windows.Overlap())
	if _, pruned, err := m.Scheduled(t.Context(), age); !pruned || err != nil {
		t.Fatalf("past the overlap: pruned %v, %v", pruned, err)
	}
	if got := states(t, m); len(got) != 1 || got[next] != security.KeyActive {
		t.Errorf("after pruning: %v", got)
	}
}

// TestManagerImport: keys that already sign keep their kids; the first signs, the others stay
// published for the overlap; a set that has keys is not imported into.
func TestManagerImport(t *testing.T) {
	m, clock := newManager(t)
	var recs []security.SigningKey
	for range 2 {
		rec, err := NewRecord(t.Context(), m.Wrapper, capif.ES256, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if made, err := m.Import(t.Context(), recs); !made || err != nil {
		t.Fatalf("import: %v, %v", made, err)
	}
	if got := states(t, m); got[recs[0].Kid] != security.KeyActive || got[recs[1].Kid] != security.KeyPrevious {
		t.Errorf("after import: %v", got)
	}
	if made, err := m.Import(t.Context(), recs[:1]); made || err != nil {
		t.Errorf("second import: %v, %v", made, err)
	}
	clock.Advance(windows.Overlap())
	if got := states(t, m); got[recs[1].Kid] != security.KeyRetired {
		t.Errorf("past the overlap: %v", got)
	}
}

// TestManagerRetire: retiring the signing key is refused until a successor waits, and -now
// hands over in the same write.
func TestManagerRetire(t *testing.T) {
	m, _ := newManager(t)
	first, _, err := m.Bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Retire(t.Context(), first, false); err == nil {
		t.Error("retired the signing key without -now")
	}
	if _, err := m.Retire(t.Context(), first, true); err == nil {
		t.Error("retired the signing key -now with no successor")
	}
	next, err := m.Rotate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Retire(t.Context(), first, true); err != nil {
		t.Fatal(err)
	}
	if got := states(t, m); got[first] != security.KeyRetired || got[next.Kid] != security.KeyActive {
		t.Errorf("after retire -now: %v", got)
	}
	if _, err := m.Retire(t.Context(), "k-nope", false); err == nil {
		t.Error("retired an unknown kid")
	}
	kms := m
	kms.Wrapper = nil
	if _, err := kms.Rotate(t.Context()); err == nil {
		t.Error("signer kms made a key")
	}
}

// TestManagerScheduledImportsLegacy: a deployment upgraded to kms-envelope: the first run
// records the KMS keys that signed so far (kids unchanged, the first still signing) and
// publishes a wrapped successor at once, which takes over after the activation delay.
func TestManagerScheduledImportsLegacy(t *testing.T) {
	m, clock := newManager(t)
	legacy := func(kid string) security.SigningKey {
		rec, err := NewRecord(t.Context(), m.Wrapper, capif.ES256, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		rec.PublicJWK.Kid, rec.Kid, rec.WrappedKey = kid, kid, nil
		rec.KMSKeyID = "arn:aws:kms:eu-west-1:111122223333:key/" + kid
		return rec
	}
	active, other := legacy("0b0b0b0b-0000-4000-8000-000000000001"), legacy("0b0b0b0b-0000-4000-8000-000000000002")
	m.Legacy = func(context.Context) ([]security.SigningKey, error) { return []security.SigningKey{active, other}, nil }
	next, _, err := m.Scheduled(t.Context(), 30*24*time.Hour)
	if err != nil || next == "" {
		t.Fatalf("first run: %q, %v", next, err)
	}
	if got := states(t, m); got[active.Kid] != security.KeyActive || got[other.Kid] != security.KeyPrevious || got[next] != security.KeyPending {
		t.Errorf("after the first run: %v", got)
	}
	clock.Advance(windows.ActivationDelay())
	if got := states(t, m); got[next] != security.KeyActive || got[active.Kid] != security.KeyPrevious {
		t.Errorf("after the activation delay: %v", got)
	}
	if kid, _, _ := m.Scheduled(t.Context(), 30*24*time.Hour); kid != "" {
		t.Errorf("a wrapped key signs, yet %s was published", kid)
	}
	// A KMS key an operator adds (moving back to kms) is kept until it is old, not moved off.
	added := legacy("0b0b0b0b-0000-4000-8000-000000000003")
	if _, ok, err := m.Add(t.Context(), added); !ok || err != nil {
		t.Fatalf("add: %v %v", ok, err)
	}
	clock.Advance(windows.ActivationDelay())
	if got := states(t, m); got[added.Kid] != security.KeyActive {
		t.Fatalf("the added key does not sign: %v", got)
	}
	if kid, _, _ := m.Scheduled(t.Context(), 30*24*time.Hour); kid != "" {
		t.Errorf("an added KMS key signs, yet %s was published", kid)
	}
	// Whether a rotation is due is decided again at the write: a set where it is not is left.
	rec, err := NewRecord(t.Context(), m.Wrapper, capif.ES256, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	never := func(security.SigningKeys, time.Time) bool { return false }
	if _, written, err := m.add(t.Context(), rec, never); written || err != nil {
		t.Errorf("a rotation no longer due was written: %v %v", written, err)
	}
}

// TestManagerBootstrapSwitchesAlgorithm: the runner restarted with another -token-alg: a key of
// that algorithm signs at once, the one it takes over from stays published for the overlap, a
// key of the old algorithm still waiting is withdrawn; a second start makes nothing, and
// switching back is the same rule again.
func TestManagerBootstrapSwitchesAlgorithm(t *testing.T) {
	m, clock := newManager(t)
	es, _, err := m.Bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := m.Rotate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	rsm := m
	rsm.Alg = capif.RS256
	rs, made, err := rsm.Bootstrap(t.Context())
	if err != nil || !made || rs == es {
		t.Fatalf("RS256 start: %q made %v, %v", rs, made, err)
	}
	set, _ := m.Load(t.Context())
	if k, _ := set.Signer(clock.Now()); k.Kid != rs || k.Alg != capif.RS256 {
		t.Errorf("signing with %+v, want the new RS256 key", k)
	}
	if got := states(t, m); len(got) != 3 || got[rs] != security.KeyActive || got[es] != security.KeyPrevious || got[waiting.Kid] != security.KeyRetired {
		t.Errorf("after the switch: %v", got)
	}
	if again, made, err := rsm.Bootstrap(t.Context()); again != rs || made || err != nil {
		t.Errorf("second RS256 start: %q made %v, %v", again, made, err)
	}
	clock.Advance(windows.ActivationDelay()) // the withdrawn key never takes over
	if got := states(t, m); got[rs] != security.KeyActive {
		t.Errorf("after the withdrawn key's activation time: %v", got)
	}
	clock.Advance(windows.Overlap())
	if got := states(t, m); got[es] != security.KeyRetired {
		t.Errorf("past the overlap: %v", got)
	}
	back, made, err := m.Bootstrap(t.Context())
	if err != nil || !made {
		t.Fatalf("ES256 start: %q made %v, %v", back, made, err)
	}
	if got := states(t, m); got[back] != security.KeyActive || got[rs] != security.KeyPrevious {
		t.Errorf("after switching back: %v", got)
	}
}

// TestManagerBootstrapAfterImport: keys imported and a start with the other algorithm in the
// same instant (a fake clock): the new key still signs, the imported one is previous.
func TestManagerBootstrapAfterImport(t *testing.T) {
	m, clock := newManager(t)
	rec, err := NewRecord(t.Context(), m.Wrapper, capif.ES256, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if made, err := m.Import(t.Context(), []security.SigningKey{rec}); !made || err != nil {
		t.Fatalf("import: %v, %v", made, err)
	}
	m.Alg = capif.RS256
	rs, made, err := m.Bootstrap(t.Context())
	if err != nil || !made {
		t.Fatalf("RS256 start: %q made %v, %v", rs, made, err)
	}
	if got := states(t, m); got[rs] != security.KeyActive || got[rec.Kid] != security.KeyPrevious {
		t.Errorf("states %v", got)
	}
}

// TestManagerRefusesAKeyForAnEmptySet: while the set is empty CAPIF_KMS_KEY_IDS sign, so a key
// published then would sign at once and drop their kids from the JWKS: rotate and add refuse.
func TestManagerRefusesAKeyForAnEmptySet(t *testing.T) {
	m, clock := newManager(t)
	if _, err := m.Rotate(t.Context()); !errors.Is(err, errEmpty) {
		t.Errorf("rotate on an empty set: %v", err)
	}
	rec, err := NewRecord(t.Context(), m.Wrapper, capif.ES256, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Add(t.Context(), rec); !errors.Is(err, errEmpty) {
		t.Errorf("add on an empty set: %v", err)
	}
	if set, _ := m.Load(t.Context()); set.Version != 0 {
		t.Errorf("the set was written: %+v", set)
	}
}

// TestManagerScheduledRunsOverlap: two rotation runs at once publish one successor; a
// retirement that changes nothing writes nothing.
func TestManagerScheduledRunsOverlap(t *testing.T) {
	m, clock := newManager(t)
	first, _, err := m.Bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * 24 * time.Hour)
	var wg sync.WaitGroup
	published := make([]string, 2)
	for i := range published {
		wg.Go(func() {
			var err error
			if published[i], _, err = m.Scheduled(t.Context(), 30*24*time.Hour); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := states(t, m); len(got) != 2 || (published[0] == "") == (published[1] == "") {
		t.Fatalf("two runs published %q: states %v", published, got)
	}
	before, _ := m.Load(t.Context())
	clock.Advance(windows.ActivationDelay())
	if _, err := m.Retire(t.Context(), first, false); err != nil { // a previous key: it leaves on its own
		t.Fatal(err)
	}
	if after, _ := m.Load(t.Context()); after.Version != before.Version {
		t.Errorf("a retirement that changed nothing wrote version %d", after.Version)
	}
}
