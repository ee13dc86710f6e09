package lambdaapp_test

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
	"github.com/capifcore/capif-security/shared/security"
)

// The caller is the CN of the PEM in requestContext.identity.clientCert, verified against the
// truststore; nothing else in the event (subjectDN, headers) names it.
func TestIdentityComesOnlyFromTheVerifiedClientCertificate(t *testing.T) {
	fx := newFixture(t)
	f := fx.function(t, httpapi.All, lambdaapp.Options{})
	put := func(id, cert string) apigwevent.Request {
		return apigwevent.Request{Method: http.MethodPut, Resource: invokerPath, Params: map[string]string{"apiInvokerId": id},
			Header: jsonHeader(), Body: putBody("aef-1", "api-qos-session", capif.PKI), ClientCertPEM: cert, RequestID: "req-" + id}
	}
	get := func(cert string) apigwevent.Request {
		return apigwevent.Request{Method: http.MethodGet, Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Query: url.Values{"authenticationInfo": {"true"}}, ClientCertPEM: cert}
	}

	resp := invoke(t, f, put("invoker-1", fx.certs["invoker-1"]))
	wantStatus(t, resp, http.StatusCreated)
	if got, want := header(resp, "Location"), apiRoot+"/capif-security/v1/trustedInvokers/invoker-1"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if got := header(resp, "X-Request-Id"); got != "req-invoker-1" {
		t.Errorf("X-Request-Id %q, want API Gateway's requestId", got)
	}

	// The AEF reads it; the PKI entry's authenticationInfo is the truststore bundle, which the
	// function only learnt on its first request.
	resp = invoke(t, f, get(fx.certs["aef-1"]))
	wantStatus(t, resp, http.StatusOK)
	var ss capif.ServiceSecurity
	if err := json.Unmarshal([]byte(resp.Body), &ss); err != nil || len(ss.SecurityInfo) != 1 {
		t.Fatalf("body %s: %v", resp.Body, err)
	}
	if si := ss.SecurityInfo[0]; si.SelSecurityMethod != capif.PKI || si.AuthenticationInfo != string(fx.ca.PEM) {
		t.Errorf("PKI entry: selected %q, authenticationInfo %q; want PKI and the truststore PEM", si.SelSecurityMethod, si.AuthenticationInfo)
	}

	other, err := devpki.NewCA("not in the truststore")
	if err != nil {
		t.Fatal(err)
	}
	aefByOtherCA := fx.issue(t, other, "aef-1")

	// The same request without a trusted certificate: 401 whatever else the event claims.
	spoofed := get("")
	spoofed.Header = map[string][]string{
		"X-Ssl-Client-Cert":             {url.QueryEscape(fx.certs["aef-1"])},
		"X-Amzn-Mtls-Clientcert":        {url.QueryEscape(fx.certs["aef-1"])},
		"X-Golambdaproxy-Apigw-Context": {`{"identity":{"clientCert":{"clientCertPem":` + strings.ReplaceAll(jsonString(fx.certs["aef-1"]), "\n", "") + `}}}`},
	}
	for name, req := range map[string]apigwevent.Request{
		"no certificate":             get(""),
		"certificate of another CA":  get(aefByOtherCA),
		"certificate only in header": spoofed,
	} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, invoke(t, f, req), http.StatusUnauthorized)
		})
	}

	// subjectDN claims the AEF but the PEM is the invoker's: the PEM decides (an invoker may
	// not read, 403).
	t.Run("subjectDN is ignored", func(t *testing.T) {
		ev, err := get(fx.certs["invoker-1"]).Event()
		if err != nil {
			t.Fatal(err)
		}
		ev.RequestContext.Identity.ClientCert.SubjectDN = "CN=aef-1,O=CAPIF local"
		payload, _ := json.Marshal(ev)
		wantStatus(t, invokeRaw(t, f, payload, 10*time.Second), http.StatusForbidden)
	})

	// An id with a percent sign travels escaped in the path and comes out whole.
	t.Run("escaped path id", func(t *testing.T) {
		resp := invoke(t, f, put(escapedID, fx.certs[escapedID]))
		wantStatus(t, resp, http.StatusCreated)
		if got, want := header(resp, "Location"), apiRoot+"/capif-security/v1/trustedInvokers/invoker%253"; got != want {
			t.Errorf("Location %q, want %q", got, want)
		}
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Events the proxy cannot turn into a request are answered 400 problem+json, never an error
// (which API Gateway would turn into a bare 502).
func TestUnconvertibleEventsAre400(t *testing.T) {
	fx := newFixture(t)
	f := fx.function(t, httpapi.All, lambdaapp.Options{})
	good := apigwevent.Request{Method: http.MethodGet, Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"}, ClientCertPEM: fx.certs["aef-1"]}
	mutate := func(fn func(m map[string]any)) []byte {
		ev, err := good.Event()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		fn(m)
		b, _ = json.Marshal(m)
		return b
	}
	for name, payload := range map[string][]byte{
		"not an object":        []byte(`[1,2,3]`),
		"not JSON":             []byte(`{"httpMethod":`),
		"empty object":         []byte(`{}`),
		"wrong member type":    mutate(func(m map[string]any) { m["headers"] = "x" }),
		"broken base64 body":   mutate(func(m map[string]any) { m["isBase64Encoded"] = true; m["body"] = "%%%not base64" }),
		"bad percent escape":   mutate(func(m map[string]any) { m["path"] = "/capif-security/v1/trustedInvokers/%zz" }),
		"method with a space":  mutate(func(m map[string]any) { m["httpMethod"] = "GET X" }),
		"control char in path": mutate(func(m map[string]any) { m["path"] = "/capif-security/v1/trustedInvokers/a\x7fb" }),
	} {
		t.Run(name, func(t *testing.T) {
			fx.logs.Reset()
			resp := invokeRaw(t, f, payload, 10*time.Second)
			wantStatus(t, resp, http.StatusBadRequest)
			if !strings.Contains(resp.Body, `"cause":"INVALID_EVENT"`) {
				t.Errorf("body %s", resp.Body)
			}
			// One access line, a counted 4xx with the reason, like any refused request.
			lines := accessLines(t, fx.logs.String())
			if len(lines) != 1 || lines[0].Status != http.StatusBadRequest || lines[0].ClientErrors != 1 || lines[0].Level != "WARN" ||
				lines[0].ClientError == "" || lines[0].RequestID != header(resp, "X-Request-Id") {
				t.Errorf("access lines %+v", lines)
			}
		})
	}
	// The same function still serves a good event.
	wantStatus(t, invoke(t, f, good), http.StatusNotFound) // no security context yet
}

// A panic while serving, before or after the handler wrote its status, is answered 500
// problem+json (the answer begun is dropped), logged, and counted as a 5xx in the one access
// line of the request; the next request is served again.
func TestPanicIs500(t *testing.T) {
	fx := newFixture(t)
	calls := 0
	f := fx.function(t, func(svc *security.Service, o httpapi.Options) *httpapi.Router {
		certs := o.Certificates
		o.Certificates = func(r *http.Request) (*x509.Certificate, error) {
			if calls++; calls == 1 {
				panic("serving bug")
			}
			return certs(r)
		}
		rt := httpapi.ObtainAPIInvokerInfo(svc, o)
		rt.Handle(http.MethodGet, "/boom", "Boom", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"partial":`))
			panic("serving bug after the status")
		})
		return rt
	}, lambdaapp.Options{})
	get := apigwevent.Request{Method: http.MethodGet, Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"}, ClientCertPEM: fx.certs["aef-1"]}
	boom := apigwevent.Request{Method: http.MethodGet, Resource: "/boom", ClientCertPEM: fx.certs["aef-1"]}
	for _, req := range []apigwevent.Request{get, boom} {
		fx.logs.Reset()
		resp := invoke(t, f, req)
		wantStatus(t, resp, http.StatusInternalServerError)
		if strings.Contains(resp.Body, "partial") || !strings.Contains(resp.Body, `"cause":"INTERNAL_ERROR"`) {
			t.Errorf("%s: body %s", req.Resource, resp.Body)
		}
		if !strings.Contains(fx.logs.String(), `"msg":"panic"`) {
			t.Errorf("%s: the panic was not logged: %s", req.Resource, fx.logs.String())
		}
		lines := accessLines(t, fx.logs.String())
		if len(lines) != 1 || lines[0].Status != http.StatusInternalServerError || lines[0].ServerErrors != 1 || lines[0].Level != "ERROR" ||
			lines[0].RequestID == "" || lines[0].RequestID != header(resp, "X-Request-Id") {
			t.Errorf("%s: access lines %+v, want one: ERROR, 500, 5xx 1, the answer's request id", req.Resource, lines)
		}
	}
	wantStatus(t, invoke(t, f, get), http.StatusNotFound) // served: no security context yet
}

// accessLine is what the tests read of an access line.
type accessLine struct {
	Level        string  `json:"level"`
	RequestID    string  `json:"requestId"`
	Method       string  `json:"method"`
	Path         string  `json:"path"`
	Status       int     `json:"status"`
	ClientErrors float64 `json:"4xx"`
	ServerErrors float64 `json:"5xx"`
	ClientError  string  `json:"clientError"`
}

// accessLines are the access lines ("request") among logs.
func accessLines(t *testing.T, logs string) []accessLine {
	t.Helper()
	var out []accessLine
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.Contains(l, `"msg":"request"`) {
			continue
		}
		var a accessLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, a)
	}
	return out
}

// Unknown paths and methods are the router's 404/405, as problem+json, like the local runner.
func TestRoutingMatchesTheLocalRunner(t *testing.T) {
	fx := newFixture(t)
	f := fx.function(t, httpapi.ObtainAPIInvokerInfo, lambdaapp.Options{})
	resp := invoke(t, f, apigwevent.Request{Method: http.MethodGet, Resource: "/capif-security/v1/nothing"})
	wantStatus(t, resp, http.StatusNotFound)
	resp = invoke(t, f, apigwevent.Request{Method: http.MethodPatch, Resource: invokerPath, Params: map[string]string{"apiInvokerId": "x"}})
	wantStatus(t, resp, http.StatusMethodNotAllowed)
	if got := header(resp, "Allow"); got != http.MethodGet {
		t.Errorf("Allow %q", got)
	}
}
