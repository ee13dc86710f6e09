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
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/kmsapp"
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

// tokenFunctions are the security-method and token functions in process, with the template's
// environment (Signer=signer) and their KMS calls through the proxy; the first has made invoker-2
// a context that token requests can use.
func tokenFunctions(t *testing.T, ds dataset, signer string, proxy *kmsProxy) (token func() (string, error), jwks func() capif.JWKSet) {
	t.Helper()
	fns := map[string]*lambdaapp.Function{}
	for _, id := range []string{"ObtainSecurityMethodFunction", "ObtainAuthorizationFunction"} {
		f, _ := functionByID(id)
		env := functionEnv(t, id, ds)
		env["AWS_ENDPOINT_URL_KMS"] = proxy.srv.URL
		if f.signs {
			env["CAPIF_SIGNER"] = signer // the Signer parameter
			if signer == settings.SignerKMS {
				env["CAPIF_KMS_WRAPPING_KEY"] = ""
			}
		}
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
		fns[id] = fn
	}
	invoke := func(id string, r apigwevent.Request) events.APIGatewayProxyResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := fns[id].Handle(ctx, eventBytes(t, r))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return resp
	}
	inv := devCert(t, "clients/invoker-2.pem")
	body := `{"notificationDestination":"https://invoker.example.com/n","securityInfo":[{"aefId":"aef-1","apiId":"api-monitoring-event","prefSecurityMethods":["OAUTH"]}]}`
	if resp := invoke("ObtainSecurityMethodFunction", apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-2"),
		Header: jsonCT(), Body: body, ClientCertPEM: inv}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, resp.Body)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"invoker-2"}, "client_secret": {"dev-secret-invoker-2"},
		"scope": {"3gpp#aef-1:monitoring-event"}}
	token = func() (string, error) {
		resp := invoke("ObtainAuthorizationFunction", apigwevent.Request{Method: http.MethodPost, Resource: tokenRes,
			Params: map[string]string{"securityId": "invoker-2"}, Header: formCT(), Body: form.Encode(), ClientCertPEM: inv})
		var tok capif.AccessTokenRsp
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(resp.Body), &tok) != nil {
			return "", &httpError{resp.StatusCode, resp.Body}
		}
		return tok.AccessToken, nil
	}
	jwks = func() capif.JWKSet {
		resp := invoke("ObtainAuthorizationFunction", apigwevent.Request{Method: http.MethodGet, Resource: jwksRes})
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
	// A first key in the set, signing at once (what the runner or the rotation function does).
	rotEnv := functionEnv(t, "RotateSigningKeysFunction", ds)
	rotEnv["CAPIF_KMS_KEY_IDS"] = ""
	rcfg, _, err := settings.Load(settings.Rotator, nil, func(k string) string { return rotEnv[k] }, settings.Options{Name: "rotator"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := kmsapp.Manager(app.Input{Settings: rcfg, KeySet: ds.store,
		AWS: func() (aws.Config, error) { return awsconfig.LoadDefaultConfig(context.Background()) }})
	if err != nil {
		t.Fatal(err)
	}
	kid, made, err := m.Bootstrap(context.Background())
	if err != nil || !made {
		t.Fatalf("bootstrap: %s %v %v", kid, made, err)
	}

	token, jwks := tokenFunctions(t, ds, settings.SignerKMSEnvelope, proxy)
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
	set := jwks()
	for i, tok := range tokens {
		parsed, _, err := signertest.Parse(tok, set)
		if err != nil || parsed.Header["kid"] != kid {
			t.Fatalf("token %d: %v (kid %v, want %s)", i, err, parsed.Header["kid"], kid)
		}
	}
}

// With kms each token is one Sign, and nothing else once the key is known.
func TestKMSTokensCostOneSignEach(t *testing.T) {
	ds := newDataset(t)
	proxy := newKMSProxy(t)
	token, _ := tokenFunctions(t, ds, settings.SignerKMS, proxy)
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
