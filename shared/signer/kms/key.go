package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/signer"
)

// key is one configured key reference and what was learnt about it, each fact at most once per
// process.
type key struct {
	ref      string // as configured
	alg      string // the algorithm it signs with: the configured CAPIF_TOKEN_ALG
	resolved lazy[resolution]
	pub      lazy[publication]
}

// resolution is what a reference names.
type resolution struct {
	keyID  string        // the key's id (a UUID, or mrk-… for a multi-Region key): the kid
	signID string        // what Sign and GetPublicKey are called with: the id or the key ARN
	gone   bool          // not found, disabled or pending deletion: left out of the JWKS
	fault  error         // a key that can never sign a token (wrong spec or usage)
	spec   types.KeySpec // known once DescribeKey answered
	sign   *signer.Key
}

// publication is the key's JWK; nil when KMS reports the key unusable.
type publication struct {
	jwk   *capif.JWK
	fault error
}

func newKey(client Client, ref, alg string) (*key, error) {
	k := &key{ref: ref, alg: alg}
	// resolved names the key: its kid and the id it signs under, and its header encoded once.
	resolved := func(keyID, signID string) (*key, error) {
		sign, err := signer.NewKey(alg, kmsKey{client: client, keyID: signID, algo: signingAlgorithms[alg]}, keyID)
		if err != nil {
			return nil, err
		}
		k.resolved.set(resolution{keyID: keyID, signID: signID, sign: sign})
		return k, nil
	}
	k.resolved.init()
	k.pub.init()
	bad := func(why string) (*key, error) {
		return nil, fmt.Errorf("kms signer: key %q: %s; want a key id, a key ARN, alias/NAME or an alias ARN", ref, why)
	}
	switch {
	case strings.HasPrefix(ref, "alias/"):
		if len(ref) == len("alias/") {
			return bad("empty alias name")
		}
		return k, nil // resolved lazily by DescribeKey
	case strings.HasPrefix(ref, "arn:"):
		// arn:PARTITION:kms:REGION:ACCOUNT:key/ID or …:alias/NAME
		parts := strings.SplitN(ref, ":", 6)
		if len(parts) != 6 || parts[1] == "" || parts[2] != "kms" {
			return bad("not a KMS ARN")
		}
		resource := parts[5]
		switch {
		case strings.HasPrefix(resource, "key/") && validKeyID(resource[len("key/"):]):
			return resolved(resource[len("key/"):], ref)
		case strings.HasPrefix(resource, "alias/") && len(resource) > len("alias/"):
			return k, nil
		}
		return bad("unrecognised ARN resource")
	case validKeyID(ref):
		return resolved(ref, ref)
	}
	return bad("unrecognised form")
}

// validKeyID accepts a KMS key id: a UUID, or mrk- and 32 hex digits for a multi-Region key.
func validKeyID(id string) bool {
	if rest, ok := strings.CutPrefix(id, "mrk-"); ok {
		return len(rest) == 32 && allHex(rest)
	}
	if len(id) != 36 {
		return false
	}
	for i, c := range []byte(id) {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !isHex(c) {
			return false
		}
	}
	return true
}

func allHex(s string) bool {
	for _, c := range []byte(s) {
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// resolve answers what the reference names; an alias costs one DescribeKey per process. The
// signing key is pinned to the key the alias named then, so a kid never disagrees with the key
// that made the signature even if the alias is moved meanwhile.
func (k *key) resolve(ctx context.Context, c Client) (resolution, error) {
	r, err := k.resolved.get(ctx, func() (resolution, error) {
		out, err := c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: &k.ref})
		if err != nil {
			var nf *types.NotFoundException
			if errors.As(err, &nf) {
				return resolution{gone: true}, nil
			}
			return resolution{}, classify(ctx, "DescribeKey", k.ref, err)
		}
		md := out.KeyMetadata
		if md == nil || md.KeyId == nil || !validKeyID(*md.KeyId) {
			return resolution{}, fmt.Errorf("kms DescribeKey %s: no usable key id in the answer", k.ref)
		}
		r := resolution{keyID: *md.KeyId, signID: *md.KeyId}
		if md.Arn != nil {
			r.signID = *md.Arn
		}
		switch md.KeyState {
		case types.KeyStateDisabled, types.KeyStatePendingDeletion, types.KeyStatePendingReplicaDeletion:
			r.gone = true
		}
		if specAlgs[md.KeySpec] == "" || md.KeyUsage != types.KeyUsageTypeSignVerify {
			r.fault = fmt.Errorf("kms signer: key %s (%s) is %s/%s, want ECC_NIST_P256 or RSA_2048, SIGN_VERIFY", k.ref, r.keyID, md.KeySpec, md.KeyUsage)
		}
		r.spec = md.KeySpec
		r.sign, err = signer.NewKey(k.alg, kmsKey{client: c, keyID: r.signID, algo: signingAlgorithms[k.alg]}, r.keyID)
		return r, err
	})
	if err != nil {
		return resolution{}, err
	}
	if r.fault != nil {
		return resolution{}, r.fault
	}
	return r, nil
}

// public answers the key's JWK, nil when the key is to be left out of the JWKS. GetPublicKey is
// called at most once per process for a key it answered (or reported disabled, pending deletion
// or deleted); other failures are not remembered, so the next request tries again.
func (k *key) public(ctx context.Context, c Client) (*capif.JWK, error) {
	r, err := k.resolve(ctx, c)
	if err != nil {
		return nil, err
	}
	if r.gone {
		return nil, nil
	}
	p, err := k.pub.get(ctx, func() (publication, error) {
		out, err := c.GetPublicKey(ctx, &awskms.GetPublicKeyInput{KeyId: &r.signID})
		if err != nil {
			if unusable(err) {
				return publication{}, nil
			}
			return publication{}, classify(ctx, "GetPublicKey", r.signID, err)
		}
		pub, err := publicKey(out)
		if err == nil {
			var jwk capif.JWK
			if jwk, err = signer.JWK(pub, r.keyID); err == nil {
				return publication{jwk: &jwk}, nil
			}
		}
		return publication{fault: fmt.Errorf("kms signer: key %s (%s): %w", k.ref, r.keyID, err)}, nil
	})
	if err != nil {
		return nil, err
	}
	return p.jwk, p.fault
}

// unusable tells the GetPublicKey errors that mean the key will not verify anything new: it is
// disabled, pending deletion (KMSInvalidStateException) or gone.
func unusable(err error) bool {
	var disabled *types.DisabledException
	var state *types.KMSInvalidStateException
	var nf *types.NotFoundException
	return errors.As(err, &disabled) || errors.As(err, &state) || errors.As(err, &nf)
}

// lazy holds a value computed at most once successfully; concurrent first callers wait for the
// one computing it (or give up with their context) instead of all calling KMS.
type lazy[T any] struct {
	sem  chan struct{} // one slot: held while computing
	done atomic.Bool
	val  T
}

func (l *lazy[T]) init() { l.sem = make(chan struct{}, 1) }

func (l *lazy[T]) set(v T) {
	l.val = v
	l.done.Store(true)
}

func (l *lazy[T]) get(ctx context.Context, load func() (T, error)) (T, error) {
	if l.done.Load() {
		return l.val, nil
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	defer func() { <-l.sem }()
	if l.done.Load() {
		return l.val, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	l.set(v)
	return v, nil
}
