package envelope

import (
	"context"
	"errors"
	"fmt"
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
// another algorithm (the runner restarted with another -token-alg), the new key signs at once
// as well, and the key it takes over from stays published for the overlap (LeavesAt), so the
// tokens it signed keep verifying; keys of the other algorithm still waiting to sign are
// withdrawn (they never signed), or they would switch back to it when they activate.
//
// A key that signs as soon as it is published is safe only where a verifier that meets an
// unknown kid refetches the JWKS (aefauth does): so only the runner calls Bootstrap, at start,
// with the -token-alg it was given; the rotation function (Scheduled) calls it on an empty set
// only, and a deployment switches algorithm by rotating.
func (m Manager) Bootstrap(ctx context.Context) (string, bool, error) {
	set, err := m.Keys.LoadKeySet(ctx)
	if err != nil {
		return "", false, fmt.Errorf("read the key set: %w", err)
	}
	if k, ok := set.Signer(m.now()); ok && k.Alg == m.Alg {
		return k.Kid, false, nil
	}
	rec, err := m.newRecord(ctx)
	if err != nil {
		return "", false, err
	}
	made := false
	set, err = m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		signer, signs := set.Signer(now)
		if made = !signs || signer.Alg != m.Alg; !made { // another process got there first: its key stands
			return set, false, nil
		}
		if !signs { // Publish activates it at once
			next, err := set.Publish(rec, now, m.Windows)
			return next, true, err
		}
		next := set
		for _, k := range set.Keys {
			if k.Alg != m.Alg && now.Before(k.ActivateAt) && k.RetiredAt.IsZero() {
				var err error
				if next, err = next.Retire(k.Kid, now, m.Windows, false); err != nil { // never signed: leaves at once
					return set, false, err
				}
			}
		}
		next, err := next.Publish(rec, now, m.Windows)
		if err != nil {
			return set, false, err
		}
		next.Keys[len(next.Keys)-1].ActivateAt = now
		if !signer.ActivateAt.Before(now) { // activated this very instant: activations stay strictly ordered
			i := slices.IndexFunc(next.Keys, func(k security.SigningKey) bool { return k.Kid == signer.Kid })
			next.Keys[i].ActivateAt = now.Add(-time.Nanosecond)
		}
		return next, true, nil
	})
	if err != nil {
		return "", false, err
	}
	k, _ := set.Signer(m.now())
	return k.Kid, made, nil
}

// Rotate publishes a new key; it signs once every verifier can have it (Windows).
func (m Manager) Rotate(ctx context.Context) (security.SigningKey, error) {
	rec, err := m.newRecord(ctx)
	if err != nil {
		return security.SigningKey{}, err
	}
	return m.Add(ctx, rec)
}

// Add publishes rec (a KMS key's record: kms.Record), as Rotate publishes a new key. A kid the
// set holds already is left as it is.
func (m Manager) Add(ctx context.Context, rec security.SigningKey) (security.SigningKey, error) {
	set, err := m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		for _, k := range set.Keys {
			if k.Kid == rec.Kid {
				return set, false, nil
			}
		}
		next, err := set.Publish(rec, now, m.Windows)
		return next, true, err
	})
	if err != nil {
		return security.SigningKey{}, err
	}
	for _, k := range set.Keys {
		if k.Kid == rec.Kid {
			return k, nil
		}
	}
	return security.SigningKey{}, fmt.Errorf("signing key %q: %w", rec.Kid, security.ErrNotFound)
}

// Import records keys that already sign (a deployment's CAPIF_KMS_KEY_IDS, a runner's PEM keys)
// into an empty set: the first signs at once, the others are published as previous keys that
// leave the JWKS at their earliest safe time. A set that has keys is left as it is (false).
func (m Manager) Import(ctx context.Context, recs []security.SigningKey) (bool, error) {
	if len(recs) == 0 {
		return false, errors.New("no keys to import")
	}
	made := false
	_, err := m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		if made = len(set.Keys) == 0; !made {
			return set, false, nil
		}
		next := set
		for i, rec := range recs {
			var err error
			if next, err = next.Publish(rec, now, m.Windows); err != nil {
				return set, false, err
			}
			if i > 0 { // signed before the import: published while its tokens may live
				next.Keys[len(next.Keys)-1].ActivateAt = now.Add(-time.Second)
			}
		}
		return next, true, nil
	})
	return made, err
}

// Retire takes kid out of service (security.SigningKeys.Retire).
func (m Manager) Retire(ctx context.Context, kid string, immediately bool) (security.SigningKeys, error) {
	return m.update(ctx, func(set security.SigningKeys, now time.Time) (security.SigningKeys, bool, error) {
		next, err := set.Retire(kid, now, m.Windows, immediately)
		return next, err == nil, err
	})
}

// Scheduled is the rotation function's run: on an empty set, the Legacy keys imported (then
// succeeded by a wrapped key) or else a first key; a new key when the signing one is older than
// age or is a KMS key (kms-envelope moves off them); and the records of keys that left the JWKS
// dropped. It reports the kid it published, if any, and whether it dropped records.
func (m Manager) Scheduled(ctx context.Context, age time.Duration) (published string, pruned bool, err error) {
	set, err := m.Keys.LoadKeySet(ctx)
	if err != nil {
		return "", false, fmt.Errorf("read the key set: %w", err)
	}
	if len(set.Keys) == 0 && m.Legacy == nil {
		kid, made, err := m.Bootstrap(ctx)
		if made {
			published = kid
		}
		return published, false, err
	}
	if len(set.Keys) == 0 {
		recs, err := m.Legacy(ctx)
		if err != nil {
			return "", false, fmt.Errorf("read the keys that signed so far: %w", err)
		}
		if _, err := m.Import(ctx, recs); err != nil {
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
	signer, _ := set.Signer(now)
	if set.RotationDue(now, age) || signer.KMSKeyID != "" && set.RotationDue(now, 0) {
		rec, err := m.Rotate(ctx)
		if err != nil {
			return "", pruned, err
		}
		published = rec.Kid
	}
	return published, pruned, nil
}
