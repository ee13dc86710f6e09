package security

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// KeySet keeps the records of the token-signing keys as one versioned set (on DynamoDB the
// registry table's K#signing item; on the embedded store one bbolt key). Reads are strongly
// consistent. Every change (publish, activate, retire, remove: the SigningKeys methods) is
// one write conditional on the version it was computed from, so two writers never both win.
type KeySet interface {
	// LoadKeySet reads the set; a set never written has Version 0 and no keys.
	LoadKeySet(ctx context.Context) (SigningKeys, error)
	// SaveKeySet stores s.Keys if the stored set is still at s.Version (ErrConflict otherwise);
	// the stored version becomes s.Version + 1.
	SaveKeySet(ctx context.Context, s SigningKeys) error
}

// SigningKey is one record of the key set: a token-signing key, where its private half is, and
// when it is published, signs and leaves the JWKS.
type SigningKey struct {
	Kid       string    `json:"kid"`
	Alg       string    `json:"alg"` // capif.ES256 or capif.RS256
	PublicJWK capif.JWK `json:"publicJwk"`
	// Exactly one of: the KMS key that signs (signer kms), or the private key (PKCS #8)
	// encrypted under the wrapping key with the kid in its encryption context (kms-envelope;
	// on the embedded store, AES-GCM under the data directory's key file).
	KMSKeyID   string `json:"kmsKeyId,omitempty"`
	WrappedKey []byte `json:"wrappedKey,omitempty"`
	// PublishedAt: in the JWKS from then on. ActivateAt: may sign from then on. RetiredAt
	// (zero: not retired): signs no more and leaves the JWKS at that time.
	PublishedAt time.Time `json:"publishedAt"`
	ActivateAt  time.Time `json:"activateAt"`
	RetiredAt   time.Time `json:"retiredAt,omitzero"`
}

// SigningKeys is the key set as read: its records, and the version a change to them is
// conditional on.
type SigningKeys struct {
	Version int64
	Keys    []SigningKey
}

// KeyWindows are the delays that keep a rotation invisible to verifiers.
type KeyWindows struct {
	// Refresh is how long a warm instance may go on using the set it read last
	// (CAPIF_KEYSET_REFRESH).
	Refresh time.Duration
	// JWKSMaxAge is how long a verifier may cache the JWKS (its Cache-Control max-age).
	JWKSMaxAge time.Duration
	// TokenLifetime is the longest a token lives (CAPIF_TOKEN_TTL).
	TokenLifetime time.Duration
}

// MinActivationDelay is the least time between publishing a key and signing with it.
const MinActivationDelay = 10 * time.Minute

// ActivationDelay is how long a published key waits before it signs: by then every instance
// has read the set (MaxStale) and every verifier's cached JWKS has been refetched, with the
// clocks' leeway.
func (w KeyWindows) ActivationDelay() time.Duration {
	return max(MinActivationDelay, w.JWKSMaxAge+w.MaxStale()+capif.Leeway)
}

// Overlap is how long a key stays published after its successor activated: an instance may sign
// with it for Refresh more, and what it signed lives TokenLifetime, judged by clocks Leeway apart.
func (w KeyWindows) Overlap() time.Duration { return w.Refresh + w.TokenLifetime + capif.Leeway }

// MaxStale is the oldest set a signer uses: one it could not read again after Refresh is kept
// as long again, then it signs nothing, so a change (retire -now) reaches every instance within
// it. The other windows hold for a set this old: it dates each key's turn by the clock, and a
// key is published ActivationDelay (which counts MaxStale) before it signs.
func (w KeyWindows) MaxStale() time.Duration { return 2 * w.Refresh }

// KeyState is where a record stands at a given time.
type KeyState string

// The key states.
const (
	KeyPending  KeyState = "pending"  // published, not yet signing
	KeyActive   KeyState = "active"   // the key that signs
	KeyPrevious KeyState = "previous" // signed before; published while its tokens may live
	KeyRetired  KeyState = "retired"  // out of the JWKS; the record waits for Prune
)

func (k SigningKey) maySign(now time.Time) bool {
	return !now.Before(k.ActivateAt) && (k.RetiredAt.IsZero() || now.Before(k.RetiredAt))
}

// signed reports whether k ever was the key that signs: it activated before it was retired.
func (k SigningKey) signed(now time.Time) bool {
	return !now.Before(k.ActivateAt) && (k.RetiredAt.IsZero() || k.RetiredAt.After(k.ActivateAt))
}

// Signer is the key that signs at now: of the keys past their ActivateAt and not retired, the
// one activated last.
func (s SigningKeys) Signer(now time.Time) (SigningKey, bool) {
	var best SigningKey
	found := false
	for _, k := range s.Keys {
		if k.maySign(now) && (!found || k.ActivateAt.After(best.ActivateAt)) {
			best, found = k, true
		}
	}
	return best, found
}

// LeavesAt is when k leaves the JWKS, zero while that is not decided: its RetiredAt, or its
// Overlap after the first later key that signed took over, whichever comes first.
func (s SigningKeys) LeavesAt(k SigningKey, now time.Time, w KeyWindows) time.Time {
	at := k.RetiredAt
	for _, o := range s.Keys {
		if o.Kid == k.Kid || !o.ActivateAt.After(k.ActivateAt) || !o.signed(now) {
			continue
		}
		if t := o.ActivateAt.Add(w.Overlap()); at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at
}

// State is where k stands at now.
func (s SigningKeys) State(k SigningKey, now time.Time, w KeyWindows) KeyState {
	if at := s.LeavesAt(k, now, w); !at.IsZero() && !now.Before(at) {
		return KeyRetired
	}
	if signer, ok := s.Signer(now); ok && signer.Kid == k.Kid {
		return KeyActive
	}
	if now.Before(k.ActivateAt) {
		return KeyPending
	}
	return KeyPrevious
}

// Published are the keys in the JWKS at now: the signing key first, then the others, latest
// activation first.
func (s SigningKeys) Published(now time.Time, w KeyWindows) []SigningKey {
	var out []SigningKey
	for _, k := range s.Keys {
		if s.State(k, now, w) != KeyRetired {
			out = append(out, k)
		}
	}
	signer, _ := s.Signer(now)
	slices.SortStableFunc(out, func(a, b SigningKey) int {
		switch {
		case a.Kid == signer.Kid && b.Kid != signer.Kid:
			return -1
		case b.Kid == signer.Kid && a.Kid != signer.Kid:
			return 1
		}
		return b.ActivateAt.Compare(a.ActivateAt)
	})
	return out
}

// pending is the latest-published key still waiting to sign, if any.
func (s SigningKeys) pending(now time.Time) (int, bool) {
	best := -1
	for i, k := range s.Keys {
		if now.Before(k.ActivateAt) && k.RetiredAt.IsZero() && (best < 0 || k.PublishedAt.After(s.Keys[best].PublishedAt)) {
			best = i
		}
	}
	return best, best >= 0
}

// RotationDue reports whether a rotation should publish a key now: no key signs, or the
// signing key is older than age and no successor is waiting.
func (s SigningKeys) RotationDue(now time.Time, age time.Duration) bool {
	signer, ok := s.Signer(now)
	if !ok {
		return true
	}
	_, waiting := s.pending(now)
	return !waiting && now.Sub(signer.ActivateAt) >= age
}

// Publish adds k, published at now. It activates at once when no key signs (a set that never
// had a key can be stale in no verifier's cache), else ActivationDelay later, after every other
// key's activation.
func (s SigningKeys) Publish(k SigningKey, now time.Time, w KeyWindows) (SigningKeys, error) {
	switch {
	case k.Kid == "" || k.PublicJWK.Kid != k.Kid:
		return s, invalid("a signing key needs a kid, which its public JWK names")
	case k.Alg != capif.ES256 && k.Alg != capif.RS256 || k.PublicJWK.Alg != k.Alg:
		return s, invalid(fmt.Sprintf("a signing key signs ES256 or RS256, as its JWK says (got %q)", k.Alg))
	case (k.KMSKeyID == "") == (len(k.WrappedKey) == 0):
		return s, invalid("a signing key is either a KMS key or a wrapped private key")
	case slices.ContainsFunc(s.Keys, func(o SigningKey) bool { return o.Kid == k.Kid }):
		return s, invalid(fmt.Sprintf("kid %q is in the key set already", k.Kid))
	}
	k.PublishedAt, k.ActivateAt, k.RetiredAt = now, now, time.Time{}
	if _, ok := s.Signer(now); ok {
		k.ActivateAt = now.Add(w.ActivationDelay())
		for _, o := range s.Keys {
			if !o.ActivateAt.Before(k.ActivateAt) {
				k.ActivateAt = o.ActivateAt.Add(time.Second)
			}
		}
	}
	s.Keys = append(slices.Clone(s.Keys), k)
	return s, nil
}

// Import records keys that signed before the set had any (a deployment's CAPIF_KMS_KEY_IDS, a
// runner's PEM keys) into an empty set: the first signs at once, the others are previous keys,
// published while their tokens may live (LeavesAt).
func (s SigningKeys) Import(recs []SigningKey, now time.Time, w KeyWindows) (SigningKeys, error) {
	if len(s.Keys) > 0 {
		return s, invalid("keys are imported into an empty key set only")
	}
	next := s
	for i, rec := range recs {
		var err error
		if next, err = next.Publish(rec, now, w); err != nil {
			return s, err
		}
		if i > 0 { // signed before the first: a previous key
			next.Keys[len(next.Keys)-1].ActivateAt = now.Add(-time.Second)
		}
	}
	return next, nil
}

// TakeOver publishes k signing at once in place of a signing key of another algorithm (the
// runner restarted with another -token-alg): the replaced key stays published for the overlap,
// and waiting keys of the other algorithm, which never signed, are withdrawn, or they would
// switch back when they activate. Safe only where verifiers refetch the JWKS on an unknown kid
// (aefauth does): deployments switch by rotating.
func (s SigningKeys) TakeOver(k SigningKey, now time.Time, w KeyWindows) (SigningKeys, error) {
	signer, ok := s.Signer(now)
	if !ok || signer.Alg == k.Alg {
		return s, invalid("a key takes over only from a signing key of another algorithm")
	}
	next := s
	for _, o := range s.Keys {
		if o.Alg != k.Alg && now.Before(o.ActivateAt) && o.RetiredAt.IsZero() {
			next.Keys = slices.Clone(next.Keys)
			next.Keys[slices.IndexFunc(next.Keys, func(x SigningKey) bool { return x.Kid == o.Kid })].RetiredAt = now
		}
	}
	next, err := next.Publish(k, now, w)
	if err != nil {
		return s, err
	}
	next.Keys[len(next.Keys)-1].ActivateAt = now
	if !signer.ActivateAt.Before(now) { // activated this very instant: activations stay strictly ordered
		i := slices.IndexFunc(next.Keys, func(x SigningKey) bool { return x.Kid == signer.Kid })
		next.Keys[i].ActivateAt = now.Add(-time.Nanosecond)
	}
	return next, nil
}

// Retire takes kid out of service. A key that never signed leaves at once, unless it activates
// within MaxStale, when an instance reading the set late may already sign with it: that is
// refused (retire it immediately, or let it sign and rotate). A previous key already leaves at its
// earliest safe time (LeavesAt): retiring it changes nothing. The signing key is refused unless
// immediately, which also activates the latest-published waiting key in the same change (refused
// when there is none). With immediately every key leaves the JWKS at once, and the tokens it
// signed fail.
func (s SigningKeys) Retire(kid string, now time.Time, w KeyWindows, immediately bool) (SigningKeys, error) {
	i := slices.IndexFunc(s.Keys, func(k SigningKey) bool { return k.Kid == kid })
	if i < 0 {
		return s, fmt.Errorf("signing key %q: %w", kid, ErrNotFound)
	}
	if s.State(s.Keys[i], now, w) == KeyRetired {
		return s, nil
	}
	signer, _ := s.Signer(now)
	next := s
	next.Keys = slices.Clone(s.Keys)
	k := &next.Keys[i]
	switch {
	case signer.Kid == kid:
		if !immediately {
			return s, invalid(fmt.Sprintf("%s is the signing key: publish its successor first (keys rotate) and it takes over, or retire it -now", kid))
		}
		waiting, ok := s.pending(now)
		if !ok {
			return s, invalid(fmt.Sprintf("%s is the signing key and no published key can take over: keys rotate first", kid))
		}
		next.Keys[waiting].ActivateAt = now
		k.RetiredAt = now
	case immediately:
		k.RetiredAt = now
	case k.signed(now):
		return s, nil // a previous key: it leaves at LeavesAt already
	case k.ActivateAt.Sub(now) < w.MaxStale():
		return s, invalid(fmt.Sprintf("%s activates at %s, sooner than every instance reads the set again: retire it -now, or let it sign and rotate", kid, k.ActivateAt.UTC().Format(time.RFC3339)))
	default:
		k.RetiredAt = now
	}
	return next, nil
}

// Prune drops the records of keys that have left the JWKS; it reports whether any did.
func (s SigningKeys) Prune(now time.Time, w KeyWindows) (SigningKeys, bool) {
	kept := slices.DeleteFunc(slices.Clone(s.Keys), func(k SigningKey) bool { return s.State(k, now, w) == KeyRetired })
	changed := len(kept) != len(s.Keys)
	s.Keys = kept
	return s, changed
}
