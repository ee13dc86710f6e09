package envelope

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/capifcore/capif-security/shared/security"
)

// Manager changes the key set: what the runner does at start, the rotation function daily and
// capif-admin keys on an operator's word. Every change is one conditional write, recomputed
// from a fresh read when another writer got in first.
type Manager struct {
	Keys security.KeySet
	// Wrapper makes the keys of Bootstrap and Rotate; nil (signer kms) refuses them.
	Wrapper Wrapper
	Alg     string // the algorithm of new keys (CAPIF_TOKEN_ALG)
	Windows security.KeyWindows
	Now     func() time.Time // time.Now when nil
	// Legacy (optional) reads the records of the keys that signed before the set had any (a
	// deployment's CAPIF_KMS_KEY_IDS, kms.Record): Scheduled imports them into an empty set, so
	// their tokens and kids stay valid.
	Legacy func(ctx context.Context) ([]security.SigningKey, error)
}

// conflictRetries bounds how often a change is recomputed after losing a race.
const conflictRetries = 5

// update applies change to the stored set; change reports false when it has nothing to write.
func (m Manager) update(ctx context.Context, change func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error)) (security.SigningKeys, error) {
	for range conflictRetries {
		set, err := m.Keys.LoadKeySet(ctx)
		if err != nil {
			return security.SigningKeys{}, fmt.Errorf("read the key set: %w", err)
		}
		next, write, err := change(set, m.now())
		if err != nil || !write {
			return set, err
		}
		err = m.Keys.SaveKeySet(ctx, next)
		if errors.Is(err, security.ErrConflict) {
			continue
		}
		if err != nil {
			return security.SigningKeys{}, fmt.Errorf("write the key set: %w", err)
		}
		next.Version++
		return next, nil
	}
	return security.SigningKeys{}, fmt.Errorf("write the key set: %w: other writers kept changing it", security.ErrConflict)
}

func (m Manager) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

// Load reads the set.
func (m Manager) Load(ctx context.Context) (security.SigningKeys, error) {
	return m.Keys.LoadKeySet(ctx)
}

// newRecord makes a wrapped key of m.Alg.
func (m Manager) newRecord(ctx context.Context) (security.SigningKey, error) {
	if m.Wrapper == nil {
		return security.SigningKey{}, errors.New("this signer makes no keys: make a KMS key and record it with capif-admin keys add")
	}
	return NewRecord(ctx, m.Wrapper, m.Alg, m.now())
}

// Bootstrap makes sure a key of m.Alg signs, and returns the signing key's kid and whether it
// made that key. A key is made only when needed, so a process that starts against a set whose
// signing key is of m.Alg makes no KMS call. When no key signs (a set that never had one), the
// new key signs at once: no verifier can hold a stale JWKS of it. When the signing key is of
// another algorithm, the new key takes over at once (security.SigningKeys.TakeOver): only the
// runner calls Bootstrap, at start, with the -token-alg it was given; deployments rotate.
func (m Manager) Bootstrap(ctx context.Context) (string, bool, error) {
	return m.first(ctx, true)
}

// first publishes a key of m.Alg that signs at once: into a set where no key signs or, with
// takeOver, in place of a signing key of another algorithm.
func (m Manager) first(ctx context.Context, takeOver bool) (string, bool, error) {
	set, err := m.Keys.LoadKeySet(ctx)
	if err != nil {
		return "", false, fmt.Errorf("read the key set: %w", err)
	}
	needed := func(set security.SigningKeys, now time.Time) (bool, bool) {
		signer, signs := set.Signer(now)
		return !signs || takeOver && signer.Alg != m.Alg, signs
	}
	if ok, _ := needed(set, m.now()); !ok {
		k, _ := set.Signer(m.now())
		return k.Kid, false, nil
	}
	rec, err := m.newRecord(ctx)
	if err != nil {
		return "", false, err
	}
	made := false
	set, err = m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		var signs bool
		if made, signs = needed(set, now); !made { // another process got there first: its key stands
			return set, false, nil
		}
		if !signs {
			next, err := set.Publish(rec, now, m.Windows) // nothing signs: it activates at once
			return next, true, err
		}
		next, err := set.TakeOver(rec, now, m.Windows)
		return next, true, err
	})
	if err != nil {
		return "", false, err
	}
	k, _ := set.Signer(m.now())
	return k.Kid, made, nil
}

// Rotate publishes a new wrapped key; it signs once every verifier can have it (Windows).
func (m Manager) Rotate(ctx context.Context) (security.SigningKey, error) {
	rec, err := m.newRecord(ctx)
	if err != nil {
		return security.SigningKey{}, err
	}
	rec, _, err = m.Add(ctx, rec)
	return rec, err
}

// errEmpty refuses a new key for a set that has none: CAPIF_KMS_KEY_IDS sign meanwhile, and a
// key published now would sign at once and take their kids out of the JWKS.
var errEmpty = errors.New("the key set is empty: a deployment signs with CAPIF_KMS_KEY_IDS meanwhile (record them first: capif-admin -kms-key-ids IDS keys import-env), a runner publishes a first key at its start")

// Add publishes rec (a KMS key's record: kms.Record), as Rotate publishes a new key, and
// returns it as stored. A kid the set holds already is left as it is (added is false).
func (m Manager) Add(ctx context.Context, rec security.SigningKey) (stored security.SigningKey, added bool, err error) {
	return m.add(ctx, rec, nil)
}

// add publishes rec unless due (when given) says no at the time of the write; it returns the
// record as stored and whether it was written.
func (m Manager) add(ctx context.Context, rec security.SigningKey, due func(security.SigningKeys, time.Time) bool) (security.SigningKey, bool, error) {
	written := false
	set, err := m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		written = false
		switch {
		case len(set.Keys) == 0:
			return set, false, errEmpty
		case slices.ContainsFunc(set.Keys, func(k security.SigningKey) bool { return k.Kid == rec.Kid }),
			due != nil && !due(set, now):
			return set, false, nil
		}
		next, err := set.Publish(rec, now, m.Windows)
		written = err == nil
		return next, true, err
	})
	if err != nil {
		return security.SigningKey{}, false, err
	}
	if i := slices.IndexFunc(set.Keys, func(k security.SigningKey) bool { return k.Kid == rec.Kid }); i >= 0 {
		return set.Keys[i], written, nil
	}
	return security.SigningKey{}, false, nil // not due after all
}

// Import records keys that already sign into an empty set (security.SigningKeys.Import). A set
// that has keys is left as it is (false).
func (m Manager) Import(ctx context.Context, recs []security.SigningKey) (bool, error) {
	if len(recs) == 0 {
		return false, errors.New("no keys to import")
	}
	made := false
	_, err := m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		if made = len(set.Keys) == 0; !made {
			return set, false, nil
		}
		next, err := set.Import(recs, now, m.Windows)
		return next, true, err
	})
	return made, err
}

// Retire takes kid out of service (security.SigningKeys.Retire); a retirement that changes
// nothing writes nothing.
func (m Manager) Retire(ctx context.Context, kid string, immediately bool) (security.SigningKeys, error) {
	return m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		next, err := set.Retire(kid, now, m.Windows, immediately)
		return next, err == nil && !reflect.DeepEqual(next.Keys, set.Keys), err
	})
}

// Scheduled is the rotation function's run: on an empty set, the Legacy keys imported (then
// succeeded by a wrapped key) or else a first key; a new key when the signing one is older than
// age or is one of the Legacy keys (kms-envelope moves off them; a KMS key an operator added
// with keys add is kept, so that a stack can move back to kms); and the records of keys that
// left the JWKS dropped. It reports the kid it published, if any, and whether it dropped
// records.
func (m Manager) Scheduled(ctx context.Context, age time.Duration) (published string, pruned bool, err error) {
	set, err := m.Keys.LoadKeySet(ctx)
	if err != nil {
		return "", false, fmt.Errorf("read the key set: %w", err)
	}
	if len(set.Keys) == 0 && m.Legacy == nil {
		kid, made, err := m.first(ctx, false) // never an algorithm switch: that is the runner's
		if made {
			published = kid
		}
		return published, false, err
	}
	var legacy []security.SigningKey // read when the set is empty or a KMS key signs
	if signer, _ := set.Signer(m.now()); m.Legacy != nil && (len(set.Keys) == 0 || signer.KMSKeyID != "") {
		if legacy, err = m.Legacy(ctx); err != nil {
			return "", false, fmt.Errorf("read the keys that signed so far: %w", err)
		}
	}
	if len(set.Keys) == 0 {
		if _, err := m.Import(ctx, legacy); err != nil {
			return "", false, err
		}
		if set, err = m.Keys.LoadKeySet(ctx); err != nil {
			return "", false, fmt.Errorf("read the key set: %w", err)
		}
	}
	now := m.now() // after the import: its records are dated by the clock
	if _, pruned = set.Prune(now, m.Windows); pruned {
		if _, err := m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
			next, changed := set.Prune(now, m.Windows)
			return next, changed, nil
		}); err != nil {
			return "", false, err
		}
	}
	// Decided again at the write, so that overlapping runs publish one key.
	due := func(set security.SigningKeys, now time.Time) bool {
		signer, _ := set.Signer(now)
		isLegacy := slices.ContainsFunc(legacy, func(k security.SigningKey) bool { return k.Kid == signer.Kid })
		return set.RotationDue(now, age) || isLegacy && set.RotationDue(now, 0)
	}
	if due(set, now) {
		rec, err := m.newRecord(ctx)
		if err != nil {
			return "", pruned, err
		}
		if _, written, err := m.add(ctx, rec, due); err != nil || !written {
			return "", pruned, err
		}
		published = rec.Kid
	}
	return published, pruned, nil
}
