package lambda

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/security"
)

// go test ./tests/lambda -run TestEventsFiles -update rewrites events/ from eventCases (and
// creates the development CA under events/dev-ca/ once, if it is missing).
var update = flag.Bool("update", false, "rewrite events/ from the test's table")

const (
	invokerRes = "/capif-security/v1/trustedInvokers/{apiInvokerId}"
	tokenRes   = "/capif-security/v1/securities/{securityId}/token"
	jwksRes    = "/.well-known/jwks.json"
	// A public destination: a deployed function refuses loopback and private addresses as
	// notificationDestination (400), so the events use a host name, judged only at dial time.
	notifDest = "https://invoker-1.example.com/notifications"
)

// eventCase is one events/ file: the request, the function it is sent to and what it must get
// when the cases run in this order on a fresh data set holding examples/registry.json.
type eventCase struct {
	file   string // below events/
	fn     string // logical id
	cert   string // client certificate below events/dev-ca/ ("" none)
	req    apigwevent.Request
	status int
	// want is checked against the body (a substring), Location or the OAuth error.
	want string
	// pkiCA: the answer has a PKI entry, and every PKI entry's authenticationInfo is the
	// truststore's CA bundle (events/dev-ca/ca.pem), read by the function from its truststore.
	pkiCA bool
}

func jsonCT() map[string][]string { return map[string][]string{"Content-Type": {"application/json"}} }
func formCT() map[string][]string {
	return map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}
}
func id(v string) map[string]string { return map[string]string{"apiInvokerId": v} }

const putBody = `{"notificationDestination":"` + notifDest + `","securityInfo":[` +
	`{"aefId":"aef-1","apiId":"api-monitoring-event","prefSecurityMethods":["OAUTH"]},` +
	`{"aefId":"aef-2","apiId":"api-location","prefSecurityMethods":["PKI"]}]}`

const updateBody = `{"notificationDestination":"` + notifDest + `","securityInfo":[` +
	`{"aefId":"aef-1","apiId":"api-monitoring-event","prefSecurityMethods":["OAUTH"]},` +
	`{"aefId":"aef-1","apiId":"api-qos-session","prefSecurityMethods":["PSK"]},` +
	`{"aefId":"aef-2","apiId":"api-location","prefSecurityMethods":["PKI"]}]}`

var eventCases = []eventCase{
	// Obtain_Security_Method
	{file: "obtain-security-method/put-no-certificate.json", fn: "ObtainSecurityMethodFunction",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: putBody},
		status: 401, want: `"cause":"UNAUTHENTICATED"`},
	{file: "obtain-security-method/put-untrusted-certificate.json", fn: "ObtainSecurityMethodFunction", cert: "untrusted/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: putBody},
		status: 401, want: `"cause":"UNAUTHENTICATED"`},
	{file: "obtain-security-method/put-wrong-role.json", fn: "ObtainSecurityMethodFunction", cert: "clients/aef-1.pem",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: putBody},
		status: 403, want: `"cause":"ROLE_NOT_ALLOWED"`},
	{file: "obtain-security-method/put-bad-body.json", fn: "ObtainSecurityMethodFunction", cert: "clients/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: `{"securityInfo":[`},
		status: 400, want: `"status":400`},
	{file: "obtain-security-method/put-unreadable-event.json", fn: "ObtainSecurityMethodFunction", cert: "clients/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: "not*base64", Base64: true},
		status: 400, want: `"cause":"INVALID_EVENT"`},
	{file: "obtain-security-method/put-escaped-id.json", fn: "ObtainSecurityMethodFunction", cert: "clients/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1 100%"), Header: jsonCT(), Body: putBody},
		status: 403, want: `"cause":"NOT_OWNER"`},
	{file: "obtain-security-method/put.json", fn: "ObtainSecurityMethodFunction", cert: "clients/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodPut, Resource: invokerRes, Params: id("invoker-1"), Header: jsonCT(), Body: putBody},
		status: 201, want: "Location: https://capif.example.com/capif-security/v1/trustedInvokers/invoker-1", pkiCA: true},
	{file: "obtain-security-method/update.json", fn: "ObtainSecurityMethodFunction", cert: "clients/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodPost, Resource: invokerRes + "/update", Params: id("invoker-1"), Header: jsonCT(), Body: updateBody},
		status: 200, want: `"apiId":"api-qos-session"`, pkiCA: true},

	// Obtain_Authorization (and the JWKS)
	// The custom domain is mutual-TLS only: an AEF fetches the JWKS (and the metadata) with its
	// client certificate, so API Gateway passes it along as for every request.
	{file: "obtain-authorization/jwks.json", fn: "ObtainAuthorizationFunction", cert: "clients/aef-1.pem",
		req: apigwevent.Request{Method: http.MethodGet, Resource: jwksRes}, status: 200, want: `"kty":"EC"`},
	{file: "obtain-authorization/token.json", fn: "ObtainAuthorizationFunction", cert: "clients/invoker-1.pem",
		req: apigwevent.Request{Method: http.MethodPost, Resource: tokenRes, Params: map[string]string{"securityId": "invoker-1"}, Header: formCT(),
			Body: url.Values{"grant_type": {"client_credentials"}, "client_id": {"invoker-1"}, "scope": {"3gpp#aef-1:monitoring-event"}}.Encode()},
		status: 200, want: `"token_type":"Bearer"`},
	{file: "obtain-authorization/token-wrong-role.json", fn: "ObtainAuthorizationFunction", cert: "clients/aef-1.pem",
		req: apigwevent.Request{Method: http.MethodPost, Resource: tokenRes, Params: map[string]string{"securityId": "aef-1"}, Header: formCT(),
			Body: url.Values{"grant_type": {"client_credentials"}, "client_id": {"aef-1"}}.Encode()},
		status: 403, want: `"cause":"ROLE_NOT_ALLOWED"`},
	{file: "obtain-authorization/token-bad-body.json", fn: "ObtainAuthorizationFunction", cert: "clients/invoker-1.pem",
		req: apigwevent.Request{Method: http.MethodPost, Resource: tokenRes, Params: map[string]string{"securityId": "invoker-1"}, Header: formCT(),
			Body: url.Values{"client_id": {"invoker-1"}}.Encode()},
		status: 400, want: `"error":"invalid_request"`},

	// Obtain_API_Invoker_Info
	{file: "obtain-invoker-info/get.json", fn: "ObtainApiInvokerInfoFunction", cert: "clients/aef-1.pem",
		req: apigwevent.Request{Method: http.MethodGet, Resource: invokerRes, Params: id("invoker-1"),
			Query: url.Values{"authenticationInfo": {"true"}, "authorizationInfo": {"true"}}},
		status: 200, want: `"apiId":"api-monitoring-event"`},
	{file: "obtain-invoker-info/get-wrong-role.json", fn: "ObtainApiInvokerInfoFunction", cert: "clients/invoker-2.pem",
		req:    apigwevent.Request{Method: http.MethodGet, Resource: invokerRes, Params: id("invoker-1")},
		status: 403, want: `"cause":"ROLE_NOT_ALLOWED"`},
	{file: "obtain-invoker-info/get-escaped-id.json", fn: "ObtainApiInvokerInfoFunction", cert: "clients/aef-1.pem",
		req:    apigwevent.Request{Method: http.MethodGet, Resource: invokerRes, Params: id("invoker 1%")},
		status: 404, want: `"status":404`},

	// Revoke_Authorization
	{file: "revoke-authorization/revoke-wrong-role.json", fn: "RevokeAuthorizationFunction", cert: "clients/invoker-1.pem",
		req:    apigwevent.Request{Method: http.MethodDelete, Resource: invokerRes, Params: id("invoker-1")},
		status: 403, want: `"cause":"ROLE_NOT_ALLOWED"`},
	{file: "revoke-authorization/revoke-bad-body.json", fn: "RevokeAuthorizationFunction", cert: "clients/aef-1.pem",
		req: apigwevent.Request{Method: http.MethodPost, Resource: invokerRes + "/delete", Params: id("invoker-1"), Header: jsonCT(),
			Body: `{"apiInvokerId":"invoker-1","apiIds":"api-monitoring-event"}`},
		status: 400, want: `"param":"/apiIds"`},
	{file: "revoke-authorization/revoke.json", fn: "RevokeAuthorizationFunction", cert: "clients/aef-1.pem",
		req: apigwevent.Request{Method: http.MethodPost, Resource: invokerRes + "/delete", Params: id("invoker-1"), Header: jsonCT(),
			Body: `{"apiInvokerId":"invoker-1","aefId":"aef-1","apiIds":["api-monitoring-event"],"cause":"OVERLIMIT_USAGE"}`},
		status: 204},
	{file: "revoke-authorization/revoke-all.json", fn: "RevokeAuthorizationFunction", cert: "clients/aef-2.pem",
		req:    apigwevent.Request{Method: http.MethodDelete, Resource: invokerRes, Params: id("invoker-1")},
		status: 204},

	// RFC 8414 metadata (served by ObtainAuthorizationFunction, like the JWKS it points at)
	{file: "obtain-authorization/metadata.json", fn: "ObtainAuthorizationFunction", cert: "clients/aef-1.pem",
		req:    apigwevent.Request{Method: http.MethodGet, Resource: httpapi.MetadataPath},
		status: 200, want: `"jwks_uri":"https://capif.example.com/.well-known/jwks.json"`},
}

func eventsDir() string { return filepath.Join(repoRoot(), "events") }

// devCAIds are the registry ids (examples/registry.json) that get a development certificate.
var devCAIds = []string{"invoker-1", "invoker-2", "aef-1", "aef-2"}

const devCAName = "CAPIF DEVELOPMENT ONLY events CA - never trust in a deployed stack"

// makeDevCA writes events/dev-ca once: the CA certificate (its key is not kept: nothing needs to
// issue more), a client certificate per registry id, and one for invoker-1 from a CA that is not
// in the truststore.
func makeDevCA(t *testing.T) {
	t.Helper()
	dir := filepath.Join(eventsDir(), "dev-ca")
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil {
		return
	}
	const validity = 10 * 365 * 24 * time.Hour // the CA's own lifetime (devpki.NewCA)
	write := func(name string, b []byte) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := devpki.NewCA(devCAName)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", ca.PEM)
	for _, id := range devCAIds {
		c, err := ca.Client(id, validity-2*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		write("clients/"+id+".pem", c.CertPEM)
	}
	other, err := devpki.NewCA("CAPIF DEVELOPMENT ONLY untrusted CA (not in any truststore)")
	if err != nil {
		t.Fatal(err)
	}
	c, err := other.Client("invoker-1", validity-2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write("untrusted/invoker-1.pem", c.CertPEM)
}

// render is the exact bytes of a case's events file.
func (c eventCase) render(t *testing.T, i int) []byte {
	t.Helper()
	req := c.req
	if c.cert != "" {
		b, err := os.ReadFile(filepath.Join(eventsDir(), "dev-ca", c.cert))
		if err != nil {
			t.Fatalf("%s: %v (run with -update to create events/dev-ca)", c.file, err)
		}
		req.ClientCertPEM = string(b)
	}
	req.Time = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) // inside the certificates' validity
	req.RequestID = fmt.Sprintf("%08x-0000-4000-8000-%012d", crc32.ChecksumIEEE([]byte(c.file)), i+1)
	ev, err := req.Event()
	if err != nil {
		t.Fatalf("%s: %v", c.file, err)
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// The events/ files are exactly what eventCases renders (so the runtime tests and the files
// cannot drift), each targets a route of template.yaml, and each certificate is what its case
// says: a development certificate of a registry id, or one from an untrusted CA.
func TestEventsFiles(t *testing.T) {
	if *update {
		makeDevCA(t)
	}
	tp := loadTemplate(t)
	tRoutes := templateRoutes(t, tp)
	ca := readPEMCert(t, filepath.Join(eventsDir(), "dev-ca", "ca.pem"))
	if ca.Subject.CommonName != devCAName || !ca.IsCA {
		t.Errorf("events/dev-ca/ca.pem is %q; it must be the development-only CA", ca.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	registryIDs := exampleRegistryIDs(t)

	want := map[string]bool{}
	for i, c := range eventCases {
		want[c.file] = true
		rendered := c.render(t, i)
		p := filepath.Join(eventsDir(), c.file)
		if *update {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, rendered, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Run(c.file, func(t *testing.T) {
			onDisk, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (go test ./tests/lambda -run TestEventsFiles -update writes it)", err)
			}
			if !bytes.Equal(onDisk, rendered) {
				t.Fatalf("events/%s differs from its case (rerun with -update, or fix the case)", c.file)
			}
			var ev events.APIGatewayProxyRequest
			dec := json.NewDecoder(bytes.NewReader(onDisk))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("not a REST proxy event: %v", err)
			}
			r := route{c.fn, ev.HTTPMethod, ev.Resource}
			if !slices.Contains(tRoutes, r) {
				t.Fatalf("%s %s → %s is no route of template.yaml", r.method, r.resource, r.fn)
			}
			if ev.RequestContext.ResourcePath != ev.Resource || ev.RequestContext.HTTPMethod != ev.HTTPMethod || ev.RequestContext.Path != ev.Path {
				t.Error("requestContext disagrees with the event")
			}
			if !pathMatches(ev.Resource, ev.Path, ev.PathParameters) {
				t.Errorf("path %q does not carry pathParameters %v escaped into %s", ev.Path, ev.PathParameters, ev.Resource)
			}
			cc := ev.RequestContext.Identity.ClientCert
			switch {
			case c.cert == "" && cc != nil:
				t.Error("a client certificate where the case has none")
			case c.cert == "":
			case cc == nil:
				t.Fatal("no requestContext.identity.clientCert")
			default:
				leaf, err := httpapi.VerifyPEM([]byte(cc.ClientCertPem), roots, nil, time.Now())
				untrusted := strings.HasPrefix(c.cert, "untrusted/")
				if untrusted != (err != nil) {
					t.Errorf("certificate %s: verification error %v", c.cert, err)
				}
				cn := readPEMCertBytes(t, []byte(cc.ClientCertPem)).Subject.CommonName
				if !slices.Contains(registryIDs, cn) {
					t.Errorf("certificate CN %q is not an id of examples/registry.json", cn)
				}
				if leaf != nil {
					if id, err := httpapi.CallerID(leaf); err != nil || id != cn {
						t.Errorf("CallerID %q, %v", id, err)
					}
				}
			}
		})
	}
	// No stray events files.
	_ = filepath.WalkDir(eventsDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		rel, _ := filepath.Rel(eventsDir(), p)
		if !want[filepath.ToSlash(rel)] {
			t.Errorf("events/%s has no case in eventCases", rel)
		}
		return nil
	})
	// The development CA is never trusted by the deployed stack.
	for _, f := range []string{"template.yaml", "samconfig.toml"} {
		b, _ := os.ReadFile(filepath.Join(repoRoot(), f))
		if bytes.Contains(b, []byte("dev-ca")) {
			t.Errorf("%s mentions the development CA", f)
		}
	}
}

// pathMatches: the path is the resource with each {param} replaced by an escaped segment that
// unescapes to pathParameters[param].
func pathMatches(resource, path string, params map[string]string) bool {
	rs, ps := strings.Split(resource, "/"), strings.Split(path, "/")
	if len(rs) != len(ps) {
		return false
	}
	for i, r := range rs {
		name, ok := strings.CutPrefix(r, "{")
		if !ok {
			if r != ps[i] {
				return false
			}
			continue
		}
		v, err := url.PathUnescape(ps[i])
		if err != nil || v != params[strings.TrimSuffix(name, "}")] {
			return false
		}
	}
	return true
}

func readPEMCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return readPEMCertBytes(t, b)
}

func readPEMCertBytes(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func exampleRegistry(t testing.TB) security.RegistryDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc security.RegistryDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func exampleRegistryIDs(t *testing.T) []string {
	doc := exampleRegistry(t)
	var ids []string
	for _, i := range doc.APIInvokers {
		ids = append(ids, i.APIInvokerID)
	}
	for _, a := range doc.AEFs {
		ids = append(ids, a.AefID)
	}
	return ids
}
