package aefauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// maxJWKSBytes bounds what is read of a JWKS response; a CCF publishes a handful of keys.
const maxJWKSBytes = 1 << 20

// fetchTimeout bounds one JWKS fetch. The fetch is shared by every request waiting for it, so it
// runs on its own deadline rather than the triggering request's.
const fetchTimeout = 10 * time.Second

// errUnavailable is the answer when no key set could ever be fetched: the token may be fine, the
// AEF just cannot tell yet.
var errUnavailable = &Error{Status: http.StatusServiceUnavailable, Description: "the CCF's verification keys are unavailable"}

// keySet is the cached JWKS. Fetches are serialised (one in flight, others wait for it) and
// spaced at least minInterval apart whatever triggers them, so no request pattern makes the AEF
// call the CCF more often than that.
type keySet struct {
	url         string
	client      *http.Client
	minInterval time.Duration
	maxAge      time.Duration
	maxStale    time.Duration // how long past maxAge a set is used while no fetch succeeds
	now         func() time.Time

	mu        sync.Mutex
	keys      map[string]verificationKey
	fetched   time.Time     // last successful fetch; zero before the first
	attempted time.Time     // last fetch attempt, successful or not
	inFlight  chan struct{} // closed when the running fetch ends; nil when none runs
}

// verificationKey is a JWKS key this verifier can use, with the one algorithm a token signed by
// it may name.
type verificationKey struct {
	pub crypto.PublicKey
	alg string
}

// key returns the verification key named kid, fetching the JWKS when kid is unknown or the
// cached set is older than maxAge, within the refetch limit.
func (s *keySet) key(ctx context.Context, kid string) (verificationKey, error) {
	for fetchedOnce := false; ; fetchedOnce = true {
		s.mu.Lock()
		k, known := s.keys[kid]
		now := s.now()
		stale := s.fetched.IsZero() || now.Sub(s.fetched) >= s.maxAge
		if (known && !stale) || fetchedOnce {
			s.mu.Unlock()
			return s.answer(k, known, now)
		}
		if wait := s.inFlight; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return verificationKey{}, errUnavailable
			}
		}
		if !s.attempted.IsZero() && now.Sub(s.attempted) < s.minInterval {
			s.mu.Unlock()
			return s.answer(k, known, now)
		}
		s.attempted = now
		done := make(chan struct{})
		s.inFlight = done
		s.mu.Unlock()

		keys, err := s.fetch(ctx)

		s.mu.Lock()
		if err == nil {
			s.keys, s.fetched = keys, s.now()
		} // on failure the previous set stays in use: a CCF outage must not take the AEF down
		s.inFlight = nil
		close(done)
		s.mu.Unlock()
	}
}

// answer turns a lookup result into the key or the refusal. A set that could not be refreshed
// for maxStale past its maxAge verifies nothing: a withdrawn key must stop verifying at some
// point even while the CCF is unreachable.
func (s *keySet) answer(k verificationKey, known bool, now time.Time) (verificationKey, error) {
	s.mu.Lock()
	fetched := s.fetched
	s.mu.Unlock()
	if fetched.IsZero() || now.Sub(fetched) >= s.maxAge+s.maxStale {
		return verificationKey{}, errUnavailable
	}
	if known {
		return k, nil
	}
	return verificationKey{}, invalidToken("the token's key (kid) is not in the CCF's key set")
}

func (s *keySet) fetch(ctx context.Context) (map[string]verificationKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("aefauth: JWKS fetch: status %d", resp.StatusCode)
	}
	var set capif.JWKSet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("aefauth: JWKS fetch: %w", err)
	}
	keys := map[string]verificationKey{}
	for _, k := range set.Keys {
		// Keys this verifier cannot use (other types, weak RSA keys, encryption keys) are
		// skipped, not fatal: a JWKS may legitimately hold them.
		if vk, err := usableKey(k); err == nil {
			keys[k.Kid] = vk
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("aefauth: JWKS fetch: no usable signing key")
	}
	return keys, nil
}

// usableKey is the key of a signing JWK with its algorithm: the JWK's alg, or the one its kty
// implies (ES256 for EC P-256, RFC 7518 §6.2.1; RS256 for RSA of at least 2048 bits with
// exponent 65537, §6.3.1). Any other key is refused.
func usableKey(k capif.JWK) (verificationKey, error) {
	if k.Kid == "" || k.Use != "" && k.Use != "sig" {
		return verificationKey{}, errors.New("not a signing key")
	}
	b64 := base64.RawURLEncoding
	switch {
	case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == capif.ES256):
		x, err1 := b64.DecodeString(k.X)
		y, err2 := b64.DecodeString(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return verificationKey{}, errors.New("malformed coordinates")
		}
		// ParseUncompressedPublicKey refuses points off the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		return verificationKey{pub, capif.ES256}, err
	case k.Kty == "RSA" && (k.Alg == "" || k.Alg == capif.RS256):
		n, err1 := b64.DecodeString(k.N)
		e, err2 := b64.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 {
			return verificationKey{}, errors.New("malformed modulus or exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E != 65537 {
			return verificationKey{}, errors.New("an RSA key below 2048 bits or with another exponent than 65537")
		}
		return verificationKey{pub, capif.RS256}, nil
	}
	return verificationKey{}, errors.New("not an ES256 or RS256 signing key")
}
