package aefauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	now         func() time.Time

	mu        sync.Mutex
	keys      map[string]*ecdsa.PublicKey
	fetched   time.Time     // last successful fetch; zero before the first
	attempted time.Time     // last fetch attempt, successful or not
	inFlight  chan struct{} // closed when the running fetch ends; nil when none runs
}

// key returns the verification key named kid, fetching the JWKS when kid is unknown or the
// cached set is older than maxAge, within the refetch limit.
func (s *keySet) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	for fetchedOnce := false; ; fetchedOnce = true {
		s.mu.Lock()
		k, known := s.keys[kid]
		now := s.now()
		stale := s.fetched.IsZero() || now.Sub(s.fetched) >= s.maxAge
		if (known && !stale) || fetchedOnce {
			s.mu.Unlock()
			return s.answer(k, known)
		}
		if wait := s.inFlight; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, errUnavailable
			}
		}
		if !s.attempted.IsZero() && now.Sub(s.attempted) < s.minInterval {
			s.mu.Unlock()
			return s.answer(k, known)
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

// answer turns a lookup result into the key or the refusal.
func (s *keySet) answer(k *ecdsa.PublicKey, known bool) (*ecdsa.PublicKey, error) {
	if known {
		return k, nil
	}
	s.mu.Lock()
	never := s.fetched.IsZero()
	s.mu.Unlock()
	if never {
		return nil, errUnavailable
	}
	return nil, invalidToken("the token's key (kid) is not in the CCF's key set")
}

func (s *keySet) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
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
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		// Keys this verifier cannot use (other types, encryption keys) are skipped, not fatal:
		// a JWKS may legitimately hold them.
		if pub, err := publicKey(k); err == nil {
			keys[k.Kid] = pub
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("aefauth: JWKS fetch: no ES256 signing key")
	}
	return keys, nil
}

// publicKey is the P-256 key of an ES256 signing JWK (RFC 7518 §6.2.1).
func publicKey(k capif.JWK) (*ecdsa.PublicKey, error) {
	if k.Kid == "" || k.Kty != "EC" || k.Crv != "P-256" || (k.Alg != "" && k.Alg != capif.Alg) || (k.Use != "" && k.Use != "sig") {
		return nil, errors.New("not an ES256 signing key")
	}
	x, err1 := base64.RawURLEncoding.DecodeString(k.X)
	y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
	if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("malformed coordinates")
	}
	// ParseUncompressedPublicKey refuses points off the curve.
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
}
