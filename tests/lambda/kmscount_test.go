package lambda

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/signertest"
)

// kmsProxy stands between the functions and local-kms: it counts the KMS requests by operation
// (X-Amz-Target) and can be stopped, after which connections are refused as by a stopped
// local-kms.
type kmsProxy struct {
	srv *httptest.Server
	mu  sync.Mutex
	ops []string
}

func newKMSProxy(t *testing.T) *kmsProxy {
	t.Helper()
	target, err := url.Parse(testenv.KMSEndpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &kmsProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.ops = append(p.ops, r.Header.Get("X-Amz-Target"))
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.stop)
	return p
}

func (p *kmsProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ops)
}

// stop closes the listener: from then on a connection is refused.
func (p *kmsProxy) stop() {
	p.srv.Listener.Close()
	p.srv.CloseClientConnections()
}

// tokenFunction is the token function in process with the template's environment for sc
// (signerEnv, which readies the key set), its KMS calls through the proxy, for invoker-2, whose
// context createTokenContext made.
func tokenFunction(t *testing.T, ds dataset, sc signerCase, proxy *kmsProxy) (token func() (string, error), jwks func() capif.JWKSet) {
	t.Helper()
	createTokenContext(t, ds)
	f, _ := functionByID("ObtainAuthorizationFunction")
	env := signerEnv(t, ds, sc)
	env["AWS_ENDPOINT_URL_KMS"] = proxy.srv.URL
	cfg, err := lambdaapp.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	fn, err := lambdaapp.New(context.Background(), cfg, f.build, lambdaapp.Options{Logger: slog.New(slog.DiscardHandler),
		Getenv: func(k string) string { return env[k] }, Backends: f.backends()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fn.Close() })
	invoke := func(r apigwevent.Request) events.APIGatewayProxyResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := fn.Handle(ctx, eventBytes(t, r))
		if err != nil {
			t.Fatalf("token function: %v", err)
		}
		return resp
	}
	req := tokenRequest(t)
	token = func() (string, error) {
		resp := invoke(req)
		var tok capif.AccessTokenRsp
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(resp.Body), &tok) != nil {
			return "", &httpError{resp.StatusCode, resp.Body}
		}
		return tok.AccessToken, nil
	}
	jwks = func() capif.JWKSet {
		resp := invoke(apigwevent.Request{Method: http.MethodGet, Resource: jwksRes})
		var set capif.JWKSet
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(resp.Body), &set) != nil {
			t.Fatalf("jwks: %d %s", resp.StatusCode, resp.Body)
		}
		return set
	}
	return token, jwks
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return http.StatusText(e.status) + ": " + e.body }

// With kms-envelope a warm instance makes one KMS request, the Decrypt of the signing key, for
// any number of tokens; and once it holds the key, KMS may be down: tokens are still issued,
// and a stock JWT library verifies every one against the JWKS (which costs no KMS call either).
func TestEnvelopeTokensCostOneDecrypt(t *testing.T) {
	ds := newDataset(t)
	proxy := newKMSProxy(t)
	// signerEnv puts a first key in the set, signing at once (as the runner or the rotation
	// function would).
	token, jwks := tokenFunction(t, ds, signerCase{"kms-envelope ES256", settings.SignerKMSEnvelope, capif.ES256}, proxy)
	set, err := ds.store.LoadKeySet(context.Background())
	if err != nil || len(set.Keys) != 1 {
		t.Fatalf("key set %+v, %v", set, err)
	}
	kid := set.Keys[0].Kid
	var tokens []string
	for range 100 {
		tok, err := token()
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	if got := proxy.requests(); !slices.Equal(got, []string{"TrentService.Decrypt"}) {
		t.Errorf("KMS requests over 100 tokens: %v, want one Decrypt", got)
	}
	proxy.stop()
	for range 100 {
		tok, err := token()
		if err != nil {
			t.Fatalf("with KMS stopped: %v", err)
		}
		tokens = append(tokens, tok)
	}
	published := jwks()
	for i, tok := range tokens {
		parsed, _, err := signertest.Parse(tok, published)
		if err != nil || parsed.Header["kid"] != kid {
			t.Fatalf("token %d: %v (kid %v, want %s)", i, err, parsed.Header["kid"], kid)
		}
	}
}

// With kms each token is one Sign, and nothing else once the key is known.
func TestKMSTokensCostOneSignEach(t *testing.T) {
	ds := newDataset(t)
	proxy := newKMSProxy(t)
	token, _ := tokenFunction(t, ds, signerCase{"kms ES256", settings.SignerKMS, capif.ES256}, proxy)
	for range 100 {
		if _, err := token(); err != nil {
			t.Fatal(err)
		}
	}
	got := proxy.requests()
	if len(got) != 100 || slices.ContainsFunc(got, func(op string) bool { return op != "TrentService.Sign" }) {
		t.Errorf("KMS requests over 100 tokens: %d, want 100 Signs: %v", len(got), got)
	}
}
