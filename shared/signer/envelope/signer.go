package envelope

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

// Config is what a Signer runs on.
type Config struct {
	Keys security.KeySet
	// Wrapper unwraps the records that hold a wrapped key; KMS signs for the records that name
	// a KMS key. Either may be nil (signer kms has no Wrapper), and a record this Signer cannot
	// use does not sign.
	Wrapper Wrapper
	KMS     kms.Client
	// Windows.Refresh is how long the Signer uses a set it read before it reads it again.
	Windows security.KeyWindows
	// Fallback (optional) signs and publishes while the set has no record: the keys of
	// CAPIF_KMS_KEY_IDS of a deployment that has not written its set yet.
	Fallback security.Signer
	Now      func() time.Time // time.Now when nil
	Logger   *slog.Logger     // slog.Default() when nil
}

// retryAfter is how long a Signer waits before it tries again what just failed: reading the
// set, or unwrapping a signing key. A failing DynamoDB or KMS must not cost every request a
// call and its retries.
const retryAfter = 10 * time.Second

// Signer is the security.Signer over a key set. It reads the set at first use and again once
// Windows.Refresh has passed; when a read fails it keeps the set it has, with a WARN, until that
// set is Windows.MaxStale old, then answers ErrUnavailable. It signs in memory with the set's
// signing key, unwrapped once per kid, and publishes the set's published keys (no KMS call). If
// the signing key cannot be unwrapped it goes on signing with the key it holds for as long as
// that key's tokens stay verifiable (they outlive it by the token lifetime), with a WARN;
// without one it answers ErrUnavailable.
type Signer struct {
	cfg Config

	setMu    sync.Mutex
	set      security.SigningKeys
	goodAt   time.Time // the last successful read; zero: never read
	nextRead time.Time // no read before then
	readErr  error     // the last read's failure, answered until nextRead

	keyMu     sync.Mutex // apart from setMu: an unwrap does not hold up the JWKS
	held      *heldKey   // the key it signs with
	failedKid string     // the signing key it last failed to unwrap, and when
	failedAt  time.Time
}

type heldKey struct {
	kid string
	key *signer.Key
}

var _ security.Signer = (*Signer)(nil)

// New makes a Signer; it makes no call until it is used.
func New(cfg Config) (*Signer, error) {
	if cfg.Keys == nil || cfg.Wrapper == nil && cfg.KMS == nil || cfg.Windows.Refresh <= 0 {
		return nil, errors.New("envelope signer: needs a key set, a wrapper or a KMS client, and a refresh period")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Signer{cfg: cfg}, nil
}

// current is the set to use now, read again when Refresh has passed.
func (s *Signer) current(ctx context.Context, now time.Time) (security.SigningKeys, error) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	if now.Before(s.nextRead) { // read recently, or failed recently: no call
		return s.usable(now)
	}
	set, err := s.cfg.Keys.LoadKeySet(ctx)
	if err == nil {
		s.set, s.goodAt, s.nextRead, s.readErr = set, now, now.Add(s.cfg.Windows.Refresh), nil
		return s.set, nil
	}
	s.readErr = fmt.Errorf("envelope signer: %w: read the key set: %w", security.ErrUnavailable, err)
	s.nextRead = now.Add(retryAfter)
	if stale := s.goodAt.Add(s.cfg.Windows.MaxStale()); !s.goodAt.IsZero() && stale.After(now) && stale.Before(s.nextRead) {
		s.nextRead = stale // try once more before the set is too old to use
	}
	if set, err := s.usable(now); err != nil {
		return set, err
	}
	s.cfg.Logger.Warn("envelope signer: the key set could not be read; using the set read before", "readAt", s.goodAt, "error", err.Error())
	return s.set, nil
}

// usable is the set read last while it is younger than MaxStale, else the last read's error.
func (s *Signer) usable(now time.Time) (security.SigningKeys, error) {
	if s.goodAt.IsZero() || now.Sub(s.goodAt) >= s.cfg.Windows.MaxStale() {
		return security.SigningKeys{}, s.readErr
	}
	return s.set, nil
}

// Sign issues the token with the set's signing key.
func (s *Signer) Sign(ctx context.Context, c capif.TokenClaims) (string, error) {
	now := s.cfg.Now()
	set, err := s.current(ctx, now)
	if err != nil {
		return "", err
	}
	if len(set.Keys) == 0 && s.cfg.Fallback != nil {
		return s.cfg.Fallback.Sign(ctx, c)
	}
	rec, ok := set.Signer(now)
	if !ok {
		return "", fmt.Errorf("envelope signer: %w: no key of the set signs now (capif-admin keys rotate)", security.ErrUnavailable)
	}
	key, err := s.keyFor(ctx, set, rec, now)
	if err != nil {
		return "", err
	}
	return key.Sign(ctx, c)
}

// keyFor is the in-memory key of rec, unwrapped on first use.
func (s *Signer) keyFor(ctx context.Context, set security.SigningKeys, rec security.SigningKey, now time.Time) (*signer.Key, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.held != nil && s.held.kid == rec.Kid {
		return s.held.key, nil
	}
	fallback := s.held != nil && s.verifiable(set, s.held.kid, now)
	if s.failedKid == rec.Kid && now.Sub(s.failedAt) < retryAfter { // failed just now: no call
		if fallback {
			return s.held.key, nil
		}
		return nil, fmt.Errorf("envelope signer: %w: the signing key %s could not be unwrapped", security.ErrUnavailable, rec.Kid)
	}
	key, err := s.unwrap(ctx, rec)
	if err == nil {
		s.held, s.failedKid = &heldKey{kid: rec.Kid, key: key}, ""
		return key, nil
	}
	s.failedKid, s.failedAt = rec.Kid, now
	if fallback {
		s.cfg.Logger.Warn("envelope signer: the new signing key cannot be unwrapped; signing with the previous one while its tokens stay verifiable",
			"kid", rec.Kid, "previous", s.held.kid, "error", err.Error())
		return s.held.key, nil
	}
	s.cfg.Logger.Error("envelope signer: the signing key cannot be unwrapped", "kid", rec.Kid, "error", err.Error())
	return nil, fmt.Errorf("envelope signer: %w: %w", security.ErrUnavailable, err)
}

// verifiable reports whether a token kid signs now stays verifiable for its whole life: kid is
// in the set and leaves the JWKS no sooner than the token expires.
func (s *Signer) verifiable(set security.SigningKeys, kid string, now time.Time) bool {
	i := slices.IndexFunc(set.Keys, func(k security.SigningKey) bool { return k.Kid == kid })
	if i < 0 {
		return false
	}
	leaves := set.LeavesAt(set.Keys[i], now, s.cfg.Windows)
	return leaves.IsZero() || !now.Add(s.cfg.Windows.TokenLifetime+capif.Leeway).After(leaves)
}

// unwrap opens rec's private key and checks that it is the key its record publishes; a record
// that names a KMS key signs in KMS.
func (s *Signer) unwrap(ctx context.Context, rec security.SigningKey) (*signer.Key, error) {
	switch {
	case rec.KMSKeyID != "" && s.cfg.KMS != nil:
		return kms.KeyOf(s.cfg.KMS, rec)
	case rec.KMSKeyID != "":
		return nil, fmt.Errorf("the key of %s is in KMS, and this signer has no KMS client", rec.Kid)
	case s.cfg.Wrapper == nil:
		return nil, fmt.Errorf("the key of %s is wrapped, and this signer cannot unwrap (signer kms: rotate to a KMS key with capif-admin keys add)", rec.Kid)
	case len(rec.WrappedKey) == 0:
		return nil, fmt.Errorf("the record of %s holds no wrapped key", rec.Kid)
	}
	priv, err := s.cfg.Wrapper.Unwrap(ctx, rec.Kid, rec.WrappedKey)
	if err != nil {
		return nil, err
	}
	if jwk, err := signer.JWK(priv.Public(), rec.Kid); err != nil || jwk != rec.PublicJWK {
		return nil, fmt.Errorf("the private key of %s is not the key its record publishes", rec.Kid)
	}
	return signer.NewKey(rec.Alg, signer.InMemory{Key: priv}, rec.Kid)
}

// JWKS publishes the set's published keys, the signing key first.
func (s *Signer) JWKS(ctx context.Context) (capif.JWKSet, error) {
	now := s.cfg.Now()
	set, err := s.current(ctx, now)
	if err != nil {
		return capif.JWKSet{}, err
	}
	if len(set.Keys) == 0 && s.cfg.Fallback != nil {
		return s.cfg.Fallback.JWKS(ctx)
	}
	out := capif.JWKSet{Keys: []capif.JWK{}}
	for _, k := range set.Published(now, s.cfg.Windows) {
		out.Keys = append(out.Keys, k.PublicJWK)
	}
	return out, nil
}
