package main

// The harness's checks must be able to fail: each bad response below has to be reported, each
// good one not.

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/settings"
)

// recorder is a testing.TB that collects errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestResponseCheckerCatches(t *testing.T) {
	r := &runner{backend: backends[0], contract: loadContract(t), secrets: map[string]string{}}
	const (
		inv   = "/capif-security/v1/trustedInvokers/i"
		token = "/capif-security/v1/securities/i/token"
		ss    = `{"notificationDestination":"https://x.example.com","securityInfo":[{"aefId":"a","prefSecurityMethods":["PKI"],"selSecurityMethod":"PKI"}]}`
		psk   = `{"notificationDestination":"https://x.example.com","securityInfo":[{"aefId":"a","prefSecurityMethods":["PSK"],"selSecurityMethod":"PSK","authenticationInfo":"k"}]}`
		pd    = `{"title":"Forbidden","status":403,"detail":"d","cause":"C"}`
	)
	h := func(kv ...string) http.Header {
		hd := http.Header{"X-Request-Id": {"r"}}
		for i := 0; i+1 < len(kv); i += 2 {
			hd.Set(kv[i], kv[i+1])
		}
		return hd
	}
	js, prob := "application/json", "application/problem+json"
	nostore := []string{"Cache-Control", "no-store", "Pragma", "no-cache"}
	with := func(base []string, kv ...string) []string { return append(append([]string{}, base...), kv...) }
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		bad                bool
	}{
		{"good 201", "PUT", inv, 201, h(with(nostore, "Content-Type", js, "Location", "https://h/x")...), ss, false},
		{"201 without Location", "PUT", inv, 201, h("Content-Type", js), ss, true},
		{"ServiceSecurity without notificationDestination", "POST", inv + "/update", 200, h("Content-Type", js), `{"securityInfo":[]}`, true},
		{"entry with aefId and interfaceDetails", "GET", inv, 200, h("Content-Type", js), `{"notificationDestination":"u","securityInfo":[{"aefId":"a","interfaceDetails":{"fqdn":"a.example.com"},"prefSecurityMethods":["PKI"]}]}`, true},
		{"entry without prefSecurityMethods", "GET", inv, 200, h("Content-Type", js), `{"notificationDestination":"u","securityInfo":[{"aefId":"a"}]}`, true},
		{"PSK without no-store", "GET", inv, 200, h("Content-Type", js), psk, true},
		{"PSK with no-store", "GET", inv, 200, h("Content-Type", js, "Cache-Control", "no-store"), psk, false},
		{"404 not declared for PUT", "PUT", inv, 404, h("Content-Type", prob), strings.Replace(pd, "403", "404", 1), true},
		{"500", "GET", inv, 500, h("Content-Type", prob), strings.Replace(pd, "403", "500", 1), true},
		{"503 on a back end that never throttles", "GET", inv, 503, h("Content-Type", prob, "Retry-After", "1"), strings.Replace(pd, "403", "503", 1), true},
		{"good problem", "GET", inv, 403, h("Content-Type", prob), pd, false},
		{"problem without cause", "GET", inv, 403, h("Content-Type", prob), `{"title":"Forbidden","status":403,"detail":"d"}`, true},
		{"problem with the wrong status", "GET", inv, 403, h("Content-Type", prob), strings.Replace(pd, "403", "401", 1), true},
		{"problem as application/json", "GET", inv, 403, h("Content-Type", js), pd, true},
		{"no X-Request-Id", "GET", inv, 403, http.Header{"Content-Type": {prob}}, pd, true},
		{"204 with a body", "DELETE", inv, 204, h(), "x", true},
		{"good token", "POST", token, 200, h(with(nostore, "Content-Type", js)...), `{"access_token":"a.b.c","token_type":"Bearer","expires_in":600}`, false},
		{"token without no-store", "POST", token, 200, h("Content-Type", js), `{"access_token":"a.b.c","token_type":"Bearer","expires_in":600}`, true},
		{"token type MAC", "POST", token, 200, h(with(nostore, "Content-Type", js)...), `{"access_token":"a","token_type":"MAC","expires_in":600}`, true},
		{"good token error", "POST", token, 400, h(with(nostore, "Content-Type", js)...), `{"error":"invalid_scope"}`, false},
		{"token error code outside the enum", "POST", token, 400, h(with(nostore, "Content-Type", js)...), `{"error":"bogus"}`, true},
		{"token 401 as problem+json", "POST", token, 401, h(with(nostore, "Content-Type", prob)...), strings.Replace(pd, "403", "401", 1), true},
		{"token 403 as problem", "POST", token, 403, h(with(nostore, "Content-Type", prob)...), pd, false},
		{"token 403 without Pragma", "POST", token, 403, h("Content-Type", prob, "Cache-Control", "no-store"), pd, true},
		{"404 outside the API as JSON", "GET", "/nothing", 404, h("Content-Type", js), `{"status":404}`, true},
		{"405 problem", "PATCH", inv, 405, h("Content-Type", prob), strings.Replace(pd, "403", "405", 1), false},
		{"good JWKS", "GET", "/.well-known/jwks.json", 200, h("Content-Type", js), jwksBody(""), false},
		{"JWKS with a private part", "GET", "/.well-known/jwks.json", 200, h("Content-Type", js), jwksBody(`,"d":"secret"`), true},
		{"JWKS off the curve", "GET", "/.well-known/jwks.json", 200, h("Content-Type", js), strings.Replace(jwksBody(""), "x\":\"", "x\":\"AA", 1), true},
		{"empty JWKS", "GET", "/.well-known/jwks.json", 200, h("Content-Type", js), `{"keys":[]}`, true},
	} {
		rec := &recorder{TB: t}
		req, err := http.NewRequest(tc.method, "https://127.0.0.1:1"+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.check(rec, "i", req, &http.Response{StatusCode: tc.status, Header: tc.header}, []byte(tc.body))
		if bad := len(rec.errs) > 0; bad != tc.bad {
			t.Errorf("%s: reported %t, want %t: %q", tc.name, bad, tc.bad, rec.errs)
		}
	}
}

// jwksBody is a JWKS with one valid P-256 key (the RFC 7515 A.3 example key) plus extra members.
func jwksBody(extra string) string {
	return `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"k1",` +
		`"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"` + extra + `}]}`
}

func TestLogCheckerCatches(t *testing.T) {
	line := func(id, op, caller string, status int) string {
		return fmt.Sprintf(`{"time":"t","level":"INFO","msg":"request","requestId":%q,"operation":%q,"method":"GET","path":"/p","caller":%q,"status":%d,"durationMs":0.5}`, id, op, caller, status)
	}
	seen1 := seen{requestID: "r1", method: "GET", path: "/p", operation: "Obtain_API_Invoker_Info", caller: "aef-a", status: 200}
	good := line("r1", "Obtain_API_Invoker_Info", "aef-a", 200)
	textLine := `time=t level=INFO msg=request requestId=r1 operation=Obtain_API_Invoker_Info method=GET path=/p caller=aef-a status=200 durationMs=0.5`
	for _, tc := range []struct {
		name   string
		log    string
		bad    bool
		format string // default json
	}{
		{"matching", good + "\n" + `{"msg":"stopped"}`, false, ""},
		{"matching text", textLine + "\n" + `time=t level=INFO msg="registry imported" file="a b"` + "\nlevel=INFO msg=stopped", false, settings.LogText},
		{"wrong status text", strings.Replace(textLine, "status=200", "status=403", 1), true, settings.LogText},
		{"JSON where text is written", good, true, settings.LogText},
		{"a secret in text", textLine + "\n" + `msg=x v="a s3cr3t-value"`, true, settings.LogText},
		{"missing line", `{"msg":"stopped"}`, true, ""},
		{"two lines", good + "\n" + good, true, ""},
		{"extra request", good + "\n" + line("r2", "", "", 404), true, ""},
		{"wrong status", line("r1", "Obtain_API_Invoker_Info", "aef-a", 403), true, ""},
		{"wrong caller", line("r1", "Obtain_API_Invoker_Info", "aef-b", 200), true, ""},
		{"wrong operation", line("r1", "JWKS", "aef-a", 200), true, ""},
		{"no durationMs", strings.Replace(good, `,"durationMs":0.5`, "", 1), true, ""},
		{"not JSON", good + "\nplain text", true, ""},
		{"a secret", good + "\n" + `{"msg":"x","v":"s3cr3t-value"}`, true, ""},
		{"a PEM", good + "\n" + `{"msg":"x","v":"-----BEGIN CERTIFICATE-----"}`, true, ""},
	} {
		r := &runner{logs: &testenv.Buffer{}, seen: []seen{seen1}, secrets: map[string]string{"s3cr3t-value": "PSK"}}
		r.cfg.LogFormat = cmp.Or(tc.format, settings.LogJSON)
		_, _ = r.logs.Write([]byte(tc.log + "\n"))
		rec := &recorder{TB: t}
		r.checkLog(rec)
		if bad := len(rec.errs) > 0; bad != tc.bad {
			t.Errorf("%s: reported %t, want %t: %q", tc.name, bad, tc.bad, rec.errs)
		}
	}
}
