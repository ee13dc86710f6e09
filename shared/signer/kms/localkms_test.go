package kms

// These tests run against local-kms (AWS_ENDPOINT_URL_KMS), creating their keys and aliases
// through the KMS API. Tokens are checked only with golang-jwt and crypto/ecdsa (signertest).

import (
	"crypto/rand"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/signertest"
)

// localConfig is an aws.Config for local-kms; the endpoint is set per client (withEndpoint).
func localConfig(t testing.TB) (aws.Config, func(*awskms.Options)) {
	t.Helper()
	endpoint := testenv.KMSEndpoint(t)
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	cfg := aws.Config{Region: region, Credentials: aws.NewCredentialsCache(staticCreds{})}
	return cfg, func(o *awskms.Options) { o.BaseEndpoint = aws.String(endpoint) }
}

func localClient(t testing.TB) *awskms.Client {
	t.Helper()
	cfg, endpoint := localConfig(t)
	return awskms.NewFromConfig(cfg, endpoint)
}

// createKey makes a fresh ES256-capable key and answers its id and ARN.
func createKey(t testing.TB, c *awskms.Client) (id, arn string) {
	t.Helper()
	out, err := c.CreateKey(t.Context(), &awskms.CreateKeyInput{
		KeySpec:     types.KeySpecEccNistP256,
		KeyUsage:    types.KeyUsageTypeSignVerify,
		Description: aws.String("capif-security signer test"),
	})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId), aws.ToString(out.KeyMetadata.Arn)
}

func createAlias(t testing.TB, c *awskms.Client, keyID string) string {
	t.Helper()
	name := "alias/capif-signer-test-" + strings.ToLower(rand.Text())
	if _, err := c.CreateAlias(t.Context(), &awskms.CreateAliasInput{AliasName: &name, TargetKeyId: &keyID}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	t.Cleanup(func() { _, _ = c.DeleteAlias(t.Context(), &awskms.DeleteAliasInput{AliasName: &name}) })
	return name
}

func mustVerify(t *testing.T, token string, jwks capif.JWKSet, wantKid string) {
	t.Helper()
	tok, got, err := signertest.Parse(token, jwks)
	if err != nil {
		t.Fatalf("token does not verify from the JWKS: %v", err)
	}
	if tok.Header["kid"] != wantKid {
		t.Errorf("kid = %v, want %s", tok.Header["kid"], wantKid)
	}
	if got["client_id"] != "inv" {
		t.Errorf("claims = %v", got)
	}
}

// Sign through local-kms, verify from the JWKS. KMS is asked to sign the SHA-256 digest
// (MessageType DIGEST); had it hashed the digest again, the token would not verify.
func TestLocalKMSSignVerifies(t *testing.T) {
	c := localClient(t)
	id, arn := createKey(t, c)
	for name, ref := range map[string]string{"key id": id, "key ARN": arn} {
		t.Run(name, func(t *testing.T) {
			rec := record(c)
			s, err := New(rec, []string{ref}, capif.ES256)
			if err != nil {
				t.Fatal(err)
			}
			token, err := s.Sign(t.Context(), claims())
			if err != nil {
				t.Fatal(err)
			}
			jwks, err := s.JWKS(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(jwks.Keys) != 1 || jwks.Keys[0].Kid != id {
				t.Fatalf("JWKS = %+v, want the one key with kid %s", jwks, id)
			}
			mustVerify(t, token, jwks, id)
			in := rec.signs[0]
			if in.MessageType != types.MessageTypeDigest || len(in.Message) != 32 || in.SigningAlgorithm != types.SigningAlgorithmSpecEcdsaSha256 {
				t.Errorf("Sign input: MessageType %s, %d-byte message, %s", in.MessageType, len(in.Message), in.SigningAlgorithm)
			}
		})
	}
}

// NewFromConfig, the constructor the Lambdas use, reaches local-kms with the same result.
func TestLocalKMSNewFromConfig(t *testing.T) {
	cfg, endpoint := localConfig(t)
	id, _ := createKey(t, localClient(t))
	s, err := NewFromConfig(cfg, []string{id}, capif.ES256, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	token, err := s.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := s.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, token, jwks, id)
}

// An alias (name or ARN) is resolved once, to the key's UUID: that is the kid, and Sign is
// called with the key itself, never the alias.
func TestLocalKMSAlias(t *testing.T) {
	c := localClient(t)
	id, arn := createKey(t, c)
	alias := createAlias(t, c, id)
	aliasARN := arn[:strings.LastIndex(arn, ":key/")] + ":" + alias
	for name, ref := range map[string]string{"alias name": alias, "alias ARN": aliasARN} {
		t.Run(name, func(t *testing.T) {
			rec := record(c)
			s, err := New(rec, []string{ref}, capif.ES256)
			if err != nil {
				t.Fatal(err)
			}
			var tokens []string
			for range 3 {
				token, err := s.Sign(t.Context(), claims())
				if err != nil {
					t.Fatal(err)
				}
				tokens = append(tokens, token)
			}
			jwks, err := s.JWKS(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := kids(jwks); !slices.Equal(got, []string{id}) {
				t.Fatalf("JWKS kids = %v, want [%s]", got, id)
			}
			for _, token := range tokens {
				mustVerify(t, token, jwks, id)
			}
			if n := rec.count("DescribeKey", ref); n != 1 {
				t.Errorf("DescribeKey(%s) called %d times, want 1", ref, n)
			}
			if n := rec.count("Sign", ""); n != rec.count("Sign", arn) {
				t.Errorf("Sign was called with something else than the key ARN: %v", rec.calls)
			}
		})
	}
}

// Rotation: a token from the old key still verifies from the JWKS once the new key is active;
// dropping the old key from the list is what retires its tokens.
func TestLocalKMSRotation(t *testing.T) {
	c := localClient(t)
	oldID, _ := createKey(t, c)
	newID, _ := createKey(t, c)

	before, _ := New(c, []string{oldID}, capif.ES256)
	oldToken, err := before.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}

	after, _ := New(c, []string{newID, oldID}, capif.ES256)
	newToken, err := after.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := after.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(jwks); !slices.Equal(got, []string{newID, oldID}) {
		t.Fatalf("JWKS kids = %v, want [new old]", got)
	}
	mustVerify(t, oldToken, jwks, oldID)
	mustVerify(t, newToken, jwks, newID)

	retired, _ := New(c, []string{newID}, capif.ES256)
	jwks, err = retired.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := signertest.Parse(oldToken, jwks); err == nil {
		t.Error("the old key's token still verifies after the old key left the list")
	}
	mustVerify(t, newToken, jwks, newID)
}

// No call at construction, no GetPublicKey for signing, and at most one GetPublicKey per key
// however often the JWKS is asked for.
func TestLocalKMSGetPublicKeyOncePerKey(t *testing.T) {
	c := localClient(t)
	a, _ := createKey(t, c)
	b, _ := createKey(t, c)
	rec := record(c)
	s, err := New(rec, []string{a, b}, capif.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if n := rec.total(); n != 0 {
		t.Fatalf("%d KMS calls at construction", n)
	}
	for range 3 {
		if _, err := s.Sign(t.Context(), claims()); err != nil {
			t.Fatal(err)
		}
	}
	if n := rec.count("GetPublicKey", ""); n != 0 {
		t.Errorf("signing called GetPublicKey %d times", n)
	}
	for range 5 {
		if _, err := s.JWKS(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{a, b} {
		if n := rec.count("GetPublicKey", id); n != 1 {
			t.Errorf("GetPublicKey(%s) called %d times, want 1", id, n)
		}
	}
	if n := rec.count("Sign", a); n != 3 {
		t.Errorf("Sign called %d times with the active key, want 3", n)
	}
}

// Keys that local-kms reports disabled or pending deletion are left out of the JWKS.
func TestLocalKMSUnusableKeysSkipped(t *testing.T) {
	c := localClient(t)
	active, _ := createKey(t, c)
	disabled, _ := createKey(t, c)
	deleting, _ := createKey(t, c)
	disabledByAlias, _ := createKey(t, c)
	if _, err := c.DisableKey(t.Context(), &awskms.DisableKeyInput{KeyId: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableKey(t.Context(), &awskms.DisableKeyInput{KeyId: &disabledByAlias}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScheduleKeyDeletion(t.Context(), &awskms.ScheduleKeyDeletionInput{KeyId: &deleting, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	alias := createAlias(t, c, disabledByAlias)
	rec := record(c)
	s, _ := New(rec, []string{active, disabled, deleting, alias}, capif.ES256)
	for range 2 {
		jwks, err := s.JWKS(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := kids(jwks); !slices.Equal(got, []string{active}) {
			t.Fatalf("JWKS kids = %v, want only the active key", got)
		}
	}
	if n := rec.count("GetPublicKey", ""); n != 3 {
		t.Errorf("GetPublicKey called %d times, want 3 (once per key by id; none for the alias DescribeKey reported disabled)", n)
	}
}

func BenchmarkLocalKMSSign(b *testing.B) {
	c := localClient(b)
	id, _ := createKey(b, c)
	s, err := New(c, []string{id}, capif.ES256)
	if err != nil {
		b.Fatal(err)
	}
	cl := claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(b.Context(), cl); err != nil {
			b.Fatal(err)
		}
	}
}

// createRSAKey makes a fresh RS256-capable key (RSA_2048, SIGN_VERIFY).
func createRSAKey(t testing.TB, c *awskms.Client) string {
	t.Helper()
	out, err := c.CreateKey(t.Context(), &awskms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify,
		Description: aws.String("capif-security RS256 signer test")})
	if err != nil {
		t.Fatalf("CreateKey RSA_2048: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

// TestLocalKMSRS256: an RSA_2048 key signs RS256 tokens (RSASSA_PKCS1_V1_5_SHA_256 of the
// digest) that stock golang-jwt verifies from the JWKS; an ES256 → RS256 switch keeps the EC
// key's tokens verifying; a key of the other algorithm is a broken deployment, not a token.
func TestLocalKMSRS256(t *testing.T) {
	c := localClient(t)
	ecID, _ := createKey(t, c)
	rsaID := createRSAKey(t, c)
	before, err := New(c, []string{ecID}, capif.ES256)
	if err != nil {
		t.Fatal(err)
	}
	oldToken, err := before.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}
	rec := record(c)
	s, err := New(rec, []string{rsaID, ecID}, capif.RS256)
	if err != nil {
		t.Fatal(err)
	}
	token, err := s.Sign(t.Context(), claims())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := s.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 2 || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Alg != capif.RS256 || jwks.Keys[0].E != "AQAB" || jwks.Keys[1].Alg != capif.ES256 {
		t.Fatalf("JWKS %+v, want the RSA key then the EC key", jwks)
	}
	mustVerify(t, token, jwks, rsaID)
	mustVerify(t, oldToken, jwks, ecID)
	if in := rec.signs[0]; in.MessageType != types.MessageTypeDigest || in.SigningAlgorithm != types.SigningAlgorithmSpecRsassaPkcs1V15Sha256 {
		t.Errorf("Sign input: %s, %s", in.MessageType, in.SigningAlgorithm)
	}
	// The configured algorithm against a key of the other one: 503, naming both, from KMS's own
	// answer (the functions hold no kms:DescribeKey).
	for _, tc := range []struct{ key, alg, spec string }{{rsaID, capif.ES256, "RSA_2048"}, {ecID, capif.RS256, "ECC_NIST_P256"}} {
		rec := record(c)
		wrong, err := New(rec, []string{tc.key}, tc.alg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wrong.Sign(t.Context(), claims())
		if !errors.Is(err, security.ErrUnavailable) || !strings.Contains(err.Error(), "CAPIF_TOKEN_ALG is "+tc.alg) || !strings.Contains(err.Error(), tc.spec) {
			t.Errorf("key %s with %s: %v, want a 503 naming both", tc.key, tc.alg, err)
		}
		if n := rec.count("DescribeKey", ""); n != 0 {
			t.Errorf("key %s with %s: %d DescribeKey calls", tc.key, tc.alg, n)
		}
	}
}

func BenchmarkLocalKMSSignRS256(b *testing.B) {
	c := localClient(b)
	s, err := New(c, []string{createRSAKey(b, c)}, capif.RS256)
	if err != nil {
		b.Fatal(err)
	}
	cl := claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(b.Context(), cl); err != nil {
			b.Fatal(err)
		}
	}
}
