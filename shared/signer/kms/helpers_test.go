package kms

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/shared/capif"
)

// recorder wraps a Client (local-kms or a fake) and counts the calls per operation and key.
type recorder struct {
	Client
	mu    sync.Mutex
	calls map[[2]string]int // {operation, KeyId as sent}
	signs []awskms.SignInput
}

func record(c Client) *recorder { return &recorder{Client: c, calls: map[[2]string]int{}} }

func (r *recorder) note(op string, id *string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[[2]string{op, aws.ToString(id)}]++
}

// count is the number of op calls for keyID, or for every key when keyID is "".
func (r *recorder) count(op, keyID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.calls {
		if k[0] == op && (keyID == "" || k[1] == keyID) {
			n += v
		}
	}
	return n
}

func (r *recorder) total() int {
	return r.count("Sign", "") + r.count("GetPublicKey", "") + r.count("DescribeKey", "")
}

func (r *recorder) Sign(ctx context.Context, in *awskms.SignInput, o ...func(*awskms.Options)) (*awskms.SignOutput, error) {
	r.note("Sign", in.KeyId)
	r.mu.Lock()
	r.signs = append(r.signs, *in)
	r.mu.Unlock()
	return r.Client.Sign(ctx, in, o...)
}

func (r *recorder) GetPublicKey(ctx context.Context, in *awskms.GetPublicKeyInput, o ...func(*awskms.Options)) (*awskms.GetPublicKeyOutput, error) {
	r.note("GetPublicKey", in.KeyId)
	return r.Client.GetPublicKey(ctx, in, o...)
}

func (r *recorder) DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, o ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	r.note("DescribeKey", in.KeyId)
	return r.Client.DescribeKey(ctx, in, o...)
}

// fakeKMS is an in-memory KMS: keys by id, each with a state, plus injectable errors per
// operation. It signs digests the way KMS does (DER), so the signer's full path runs on it.
type fakeKMS struct {
	mu      sync.Mutex
	keys    map[string]*fakeKey
	aliases map[string]string  // alias name → key id
	errs    map[string][]error // per operation, consumed one per call
}

type fakeKey struct {
	priv  *ecdsa.PrivateKey
	state types.KeyState
}

const fakeARN = "arn:aws:kms:us-east-1:111122223333:key/"

func newFake() *fakeKMS {
	return &fakeKMS{keys: map[string]*fakeKey{}, aliases: map[string]string{}, errs: map[string][]error{}}
}

func (f *fakeKMS) addKey(t *testing.T, id string, state types.KeyState) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[id] = &fakeKey{priv: k, state: state}
}

// failNext makes the next calls of op fail with errs, in order.
func (f *fakeKMS) failNext(op string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[op] = append(f.errs[op], errs...)
}

func (f *fakeKMS) injected(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.errs[op]; len(q) > 0 {
		f.errs[op] = q[1:]
		return q[0]
	}
	return nil
}

// lookup finds a key by id, key ARN, alias name or alias ARN.
func (f *fakeKMS) lookup(ref string) (string, *fakeKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := ref
	if len(ref) > len(fakeARN) && ref[:len(fakeARN)] == fakeARN {
		id = ref[len(fakeARN):]
	}
	if target, ok := f.aliases[ref]; ok {
		id = target
	}
	k, ok := f.keys[id]
	if !ok {
		return "", nil, &types.NotFoundException{Message: aws.String("no such key")}
	}
	return id, k, nil
}

func (f *fakeKMS) usable(k *fakeKey) error {
	switch k.state {
	case types.KeyStateDisabled:
		return &types.DisabledException{Message: aws.String("disabled")}
	case types.KeyStatePendingDeletion:
		return &types.KMSInvalidStateException{Message: aws.String("pending deletion")}
	}
	return nil
}

func (f *fakeKMS) Sign(_ context.Context, in *awskms.SignInput, _ ...func(*awskms.Options)) (*awskms.SignOutput, error) {
	if err := f.injected("Sign"); err != nil {
		return nil, err
	}
	id, k, err := f.lookup(aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	if err := f.usable(k); err != nil {
		return nil, err
	}
	if in.MessageType != types.MessageTypeDigest || len(in.Message) != 32 || in.SigningAlgorithm != types.SigningAlgorithmSpecEcdsaSha256 {
		return nil, errors.New("fake KMS: expected a SHA-256 DIGEST signed with ECDSA_SHA_256")
	}
	der, err := ecdsa.SignASN1(rand.Reader, k.priv, in.Message)
	if err != nil {
		return nil, err
	}
	return &awskms.SignOutput{KeyId: aws.String(fakeARN + id), Signature: der, SigningAlgorithm: in.SigningAlgorithm}, nil
}

func (f *fakeKMS) GetPublicKey(_ context.Context, in *awskms.GetPublicKeyInput, _ ...func(*awskms.Options)) (*awskms.GetPublicKeyOutput, error) {
	if err := f.injected("GetPublicKey"); err != nil {
		return nil, err
	}
	id, k, err := f.lookup(aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	if err := f.usable(k); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &awskms.GetPublicKeyOutput{
		KeyId: aws.String(fakeARN + id), PublicKey: der,
		KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify,
	}, nil
}

func (f *fakeKMS) DescribeKey(_ context.Context, in *awskms.DescribeKeyInput, _ ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	if err := f.injected("DescribeKey"); err != nil {
		return nil, err
	}
	id, k, err := f.lookup(aws.ToString(in.KeyId))
	if err != nil {
		return nil, err
	}
	return &awskms.DescribeKeyOutput{KeyMetadata: &types.KeyMetadata{
		KeyId: aws.String(id), Arn: aws.String(fakeARN + id), KeyState: k.state,
		KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify,
	}}, nil
}

func claims() capif.TokenClaims {
	now := time.Now().Unix()
	return capif.TokenClaims{
		Issuer: "ccf", Subject: "inv", ClientID: "inv", Audience: []string{"aef-1"},
		Scope: "3gpp#aef-1:api", IssuedAt: now, Expiry: now + 300, ID: "jti",
	}
}

func kids(set capif.JWKSet) []string {
	var ids []string
	for _, k := range set.Keys {
		ids = append(ids, k.Kid)
	}
	return ids
}
