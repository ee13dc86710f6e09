package lambda

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/signer/signertest"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
)

// dataset is a fresh data set on the peers: the three tables (the adapter's schema), a P-256
// signing key in local-kms and examples/registry.json imported through the adapter.
type dataset struct {
	tables ddbstore.Tables
	keyID  string          // SigningKey's stand-in (ECC_NIST_P256)
	rsaID  string          // SigningKeyRsa's (RSA_2048)
	wrapID string          // WrappingKey's (SYMMETRIC_DEFAULT)
	store  *ddbstore.Store // the adapter on the tables, for seeding and reading behind the functions
}

func newDataset(t *testing.T) dataset {
	t.Helper()
	testenv.DynamoDBEndpoint(t)
	testenv.KMSEndpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ds := dataset{tables: ddbstore.TablesWithPrefix(fmt.Sprintf("lambda-%d-", time.Now().UnixNano()))}
	st, err := ddbstore.New(cfg, ddbstore.Options{Tables: ds.tables})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	ds.store = st
	if err := security.New(st, st, nil, nil, nil, security.Config{}).ImportRegistry(ctx, exampleRegistry(t)); err != nil {
		t.Fatal(err)
	}
	key, err := awskms.NewFromConfig(cfg).CreateKey(ctx, &awskms.CreateKeyInput{
		KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify, Description: aws.String("tests/lambda"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ds.keyID = aws.ToString(key.KeyMetadata.KeyId)
	rsaKey, err := awskms.NewFromConfig(cfg).CreateKey(ctx, &awskms.CreateKeyInput{
		KeySpec: kmstypes.KeySpecRsa2048, KeyUsage: kmstypes.KeyUsageTypeSignVerify, Description: aws.String("tests/lambda RS256"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ds.rsaID = aws.ToString(rsaKey.KeyMetadata.KeyId)
	wrapKey, err := awskms.NewFromConfig(cfg).CreateKey(ctx, &awskms.CreateKeyInput{Description: aws.String("tests/lambda wrapping key")})
	if err != nil {
		t.Fatal(err)
	}
	ds.wrapID = aws.ToString(wrapKey.KeyMetadata.KeyId)
	return ds
}

// functionEnv is a function's environment as template.yaml declares it, with the stack's
// references resolved to the data set, and the local overrides `make invoke` applies: the
// development CA as the truststore file and the peers' endpoints.
func functionEnv(t *testing.T, logicalID string, ds dataset) map[string]string {
	t.Helper()
	tp := loadTemplate(t)
	r, ok := tp.resources("AWS::Serverless::Function")[logicalID]
	if !ok {
		t.Fatalf("no function %s", logicalID)
	}
	env, _ := path(tp.functionProps(r), "Environment", "Variables").(map[string]any)
	refs := maps.Clone(sampleRefs)
	for k, v := range map[string]string{"ContextsTable": ds.tables.Contexts, "RegistryTable": ds.tables.Registry, "OutboxTable": ds.tables.Outbox,
		"SigningKey": ds.keyID, "SigningKeyRsa": ds.rsaID, "WrappingKey": ds.wrapID} {
		refs[k] = v
	}
	resolved := resolveEnv(t, env, refs)
	resolved["CAPIF_TRUSTSTORE_URI"] = ""
	resolved["CAPIF_TRUSTSTORE_VERSION"] = "" // a version of the S3 object, not of the file
	resolved["CAPIF_TRUSTSTORE_FILE"] = filepath.Join(repoRoot(), "events", "dev-ca", "ca.pem")
	for _, k := range []string{"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		resolved[k] = os.Getenv(k)
	}
	resolved["AWS_EC2_METADATA_DISABLED"] = "true"
	return resolved
}

// invoker sends one event to a function and returns its proxy response.
type invoker func(t *testing.T, logicalID string, payload []byte) events.APIGatewayProxyResponse

// runEventCases sends every events/ file, in table order, and checks each answer.
func runEventCases(t *testing.T, invoke invoker) {
	t.Helper()
	for _, c := range eventCases {
		payload, err := os.ReadFile(filepath.Join(eventsDir(), c.file))
		if err != nil {
			t.Fatal(err)
		}
		resp := invoke(t, c.fn, payload)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d; body %s", c.file, resp.StatusCode, c.status, resp.Body)
			continue
		}
		checkShape(t, c.file, resp)
		switch {
		case strings.HasPrefix(c.want, "Location: "):
			if got := header1(resp, "Location"); got != strings.TrimPrefix(c.want, "Location: ") {
				t.Errorf("%s: Location %q, want %s", c.file, got, c.want)
			}
		case !strings.Contains(resp.Body, c.want):
			t.Errorf("%s: body %s lacks %s", c.file, resp.Body, c.want)
		}
		if c.pkiCA {
			checkPKIAuthenticationInfo(t, c.file, resp)
		}
	}
}

// checkPKIAuthenticationInfo: every PKI entry of the answer carries the CA bundle of the
// truststore as authenticationInfo (the function reads both from the same lazy value).
func checkPKIAuthenticationInfo(t *testing.T, name string, resp events.APIGatewayProxyResponse) {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var ss capif.ServiceSecurity
	if err := json.Unmarshal([]byte(resp.Body), &ss); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pki := 0
	for _, si := range ss.SecurityInfo {
		if si.SelSecurityMethod != capif.PKI {
			continue
		}
		pki++
		if si.AuthenticationInfo != string(ca) {
			t.Errorf("%s: PKI entry for %s/%s has authenticationInfo %q, want the truststore's CA PEM", name, si.AefID, si.APIID, si.AuthenticationInfo)
		}
	}
	if pki == 0 {
		t.Errorf("%s: no PKI entry in %s", name, resp.Body)
	}
}

// checkShape: errors are problem+json (OAuth errors of the token endpoint JSON), successes
// JSON or empty, and every answer carries the request id API Gateway gave it.
func checkShape(t *testing.T, name string, resp events.APIGatewayProxyResponse) {
	t.Helper()
	ct := header1(resp, "Content-Type")
	switch {
	case resp.StatusCode == http.StatusNoContent:
		if resp.Body != "" {
			t.Errorf("%s: 204 with a body", name)
		}
	case resp.StatusCode >= 400 && ct == "application/problem+json":
		var pd capif.ProblemDetails
		if err := json.Unmarshal([]byte(resp.Body), &pd); err != nil || pd.Status != resp.StatusCode {
			t.Errorf("%s: not a ProblemDetails of status %d: %s", name, resp.StatusCode, resp.Body)
		}
	case resp.StatusCode >= 400 && ct == "application/json":
		var e capif.AccessTokenErr
		if err := json.Unmarshal([]byte(resp.Body), &e); err != nil || e.Error == "" {
			t.Errorf("%s: not an AccessTokenErr: %s", name, resp.Body)
		}
	case resp.StatusCode < 300 && ct == "application/json":
	default:
		t.Errorf("%s: %d with Content-Type %q", name, resp.StatusCode, ct)
	}
	if header1(resp, "X-Request-Id") == "" {
		t.Errorf("%s: no X-Request-Id", name)
	}
}

func devCert(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func eventBytes(t *testing.T, r apigwevent.Request) []byte {
	t.Helper()
	ev, err := r.Event()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flowSecrets are values the flow saw that must never appear in a log.
type flowSecrets struct{ token, psk string }

// runFlow is the life of a security context through the four functions: invoker-2 creates it,
// obtains a token (with its client secret), the token verifies with the published JWKS, the
// AEF reads the context, and revokes it all.
func runFlow(t *testing.T, invoke invoker, notificationDestination string) flowSecrets {
	t.Helper()
	var secrets flowSecrets
	inv, aef := devCert(t, "clients/invoker-2.pem"), devCert(t, "clients/aef-1.pem")
	body := `{"notificationDestination":"` + notificationDestination + `","securityInfo":[` +
		`{"aefId":"aef-1","apiId":"api-monitoring-event","prefSecurityMethods":["OAUTH"]},` +
		`{"aefId":"aef-1","apiId":"api-qos-session","prefSecurityMethods":["PSK"]}]}`
	resp := invoke(t, "ObtainSecurityMethodFunction", eventBytes(t, apigwevent.Request{Method: http.MethodPut, Resource: invokerRes,
		Params: id("invoker-2"), Header: jsonCT(), Body: body, ClientCertPEM: inv, RequestID: "flow-create"}))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, resp.Body)
	}
	var created capif.ServiceSecurity
	if err := json.Unmarshal([]byte(resp.Body), &created); err != nil {
		t.Fatal(err)
	}
	for _, si := range created.SecurityInfo {
		if si.SelSecurityMethod == capif.PSK {
			secrets.psk = si.AuthenticationInfo
		}
	}

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"invoker-2"}, "client_secret": {"dev-secret-invoker-2"},
		"scope": {"3gpp#aef-1:monitoring-event"}}
	resp = invoke(t, "ObtainAuthorizationFunction", eventBytes(t, apigwevent.Request{Method: http.MethodPost, Resource: tokenRes,
		Params: map[string]string{"securityId": "invoker-2"}, Header: formCT(), Body: form.Encode(), ClientCertPEM: inv, RequestID: "flow-token"}))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, resp.Body)
	}
	var tok capif.AccessTokenRsp
	if err := json.Unmarshal([]byte(resp.Body), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token body %s", resp.Body)
	}
	secrets.token = tok.AccessToken

	resp = invoke(t, "ObtainAuthorizationFunction", eventBytes(t, apigwevent.Request{Method: http.MethodGet, Resource: jwksRes, RequestID: "flow-jwks"}))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d %s", resp.StatusCode, resp.Body)
	}
	var set capif.JWKSet
	if err := json.Unmarshal([]byte(resp.Body), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks body %s", resp.Body)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok.AccessToken, claims, func(tk *jwt.Token) (any, error) {
		for _, k := range set.Keys {
			if k.Kid == tk.Header["kid"] {
				return jwkKey(t, k), nil
			}
		}
		return nil, fmt.Errorf("no JWK with kid %v", tk.Header["kid"])
	}, jwt.WithValidMethods([]string{"ES256", "RS256"}), jwt.WithIssuer("https://"+sampleRefs["DomainName"]), jwt.WithExpirationRequired())
	if err != nil || !parsed.Valid {
		t.Fatalf("the token does not verify with the JWKS: %v", err)
	}
	if claims["scope"] != "3gpp#aef-1:monitoring-event" || claims["client_id"] != "invoker-2" {
		t.Errorf("claims %v", claims)
	}

	resp = invoke(t, "ObtainApiInvokerInfoFunction", eventBytes(t, apigwevent.Request{Method: http.MethodGet, Resource: invokerRes,
		Params: id("invoker-2"), Query: url.Values{"authenticationInfo": {"true"}}, ClientCertPEM: aef, RequestID: "flow-read"}))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("AEF read: %d %s", resp.StatusCode, resp.Body)
	}
	var read capif.ServiceSecurity
	if err := json.Unmarshal([]byte(resp.Body), &read); err != nil || len(read.SecurityInfo) != 2 {
		t.Fatalf("AEF read body %s", resp.Body)
	}
	for _, si := range read.SecurityInfo {
		if si.SelSecurityMethod != capif.PSK {
			continue
		}
		if si.AuthenticationInfo == "" || secrets.psk != "" && si.AuthenticationInfo != secrets.psk {
			t.Errorf("the AEF reads PSK %q, the invoker got %q", si.AuthenticationInfo, secrets.psk)
		}
		secrets.psk = si.AuthenticationInfo
	}

	resp = invoke(t, "RevokeAuthorizationFunction", eventBytes(t, apigwevent.Request{Method: http.MethodDelete, Resource: invokerRes,
		Params: id("invoker-2"), ClientCertPEM: aef, RequestID: "flow-revoke"}))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", resp.StatusCode, resp.Body)
	}
	// Everything of aef-1 is revoked: no context left, no token.
	resp = invoke(t, "ObtainApiInvokerInfoFunction", eventBytes(t, apigwevent.Request{Method: http.MethodGet, Resource: invokerRes,
		Params: id("invoker-2"), ClientCertPEM: aef, RequestID: "flow-read-after"}))
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("read after revocation: %d %s", resp.StatusCode, resp.Body)
	}
	resp = invoke(t, "ObtainAuthorizationFunction", eventBytes(t, apigwevent.Request{Method: http.MethodPost, Resource: tokenRes,
		Params: map[string]string{"securityId": "invoker-2"}, Header: formCT(), Body: form.Encode(), ClientCertPEM: inv, RequestID: "flow-token-after"}))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, "unauthorized_client") {
		t.Errorf("token after revocation: %d %s", resp.StatusCode, resp.Body)
	}
	return secrets
}

// jwkKey turns a JWK into the P-256 public key it describes.
func jwkKey(t *testing.T, k capif.JWK) any {
	t.Helper()
	var key any
	var err error
	switch {
	case k.Kty == "EC" && k.Crv == "P-256" && k.Alg == "ES256":
		key, err = signertest.PublicKey(k)
	case k.Kty == "RSA" && k.Alg == "RS256":
		key, err = signertest.RSAPublicKey(k)
	default:
		t.Fatalf("JWK %+v", k)
	}
	if err != nil {
		t.Fatalf("JWK: %v", err)
	}
	return key
}

// seedOwed writes, through the DynamoDB adapter, what a revocation whose notification could not
// be delivered leaves in the outbox: a due record for destination (an old-shape one, with no
// delivery state: due at once), and with push (aef-1's aefSecurityRoot; "" for none) aef-1's
// push. It returns the invoker record's id.
func seedOwed(t *testing.T, ds dataset, destination, push string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := ds.store
	inv := fmt.Sprintf("seeded-%d", time.Now().UnixNano())
	sc := &security.SecurityContext{APIInvokerID: inv, NotificationDestination: destination, Entries: []security.Entry{{AefID: "aef-1",
		SelSecurityMethod: capif.PKI, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI},
		Targets: []security.Target{{AefID: "aef-1", APIID: "api-monitoring-event", APIName: "monitoring-event"}}}}}
	if err := st.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	sc.Entries = nil // the revocation removed the last entry: the context goes, the notification is owed
	owed := security.Owed{ID: "owed-" + inv, APIInvokerID: inv, Destination: destination,
		Notification: capif.SecurityNotification{APIInvokerID: inv, AefID: "aef-1", APIIDs: []string{"api-monitoring-event"}, Cause: capif.OverlimitUsage}}
	all := []security.Owed{owed}
	if push != "" {
		p := owed
		p.ID, p.Kind, p.Destination = "push-"+inv, security.ToAEF, push+capif.RevokeAuthorizationPath
		all = append(all, p)
	}
	if err := st.Replace(ctx, sc, all); err != nil {
		t.Fatal(err)
	}
	return owed.ID
}

// pendingOwed lists the outbox records, live and dead, through the adapter.
func pendingOwed(t *testing.T, ds dataset) []security.Owed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := ds.store
	owed, err := st.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return owed
}
