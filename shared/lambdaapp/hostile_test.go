package lambdaapp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
)

// The malformed-request classes that API Gateway can deliver (it buffers whole bodies, so short
// and slow bodies exist only on the runner), through the Lambda entry point: each answered with
// the same status and cause as on the runner, as the right error type.
func TestMalformedRequestClassesThroughLambda(t *testing.T) {
	fx := newFixture(t)
	f := fx.function(t, httpapi.All, lambdaapp.Options{})
	token := "/capif-security/v1/securities/{securityId}/token"
	form := map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}
	tests := []struct {
		name   string
		req    apigwevent.Request
		status int
		cause  string
	}{
		{"no certificate, huge deep body", apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Header: jsonHeader(), Body: `{"securityInfo":` + strings.Repeat("[", 9000) + strings.Repeat("1,", 40000) + "1" + strings.Repeat("]", 9000) + "}"}, 401, "UNAUTHENTICATED"},
		{"duplicate member", apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Header: jsonHeader(), Body: `{"securityInfo":[],"securityInfo":[]}`, ClientCertPEM: fx.certs["invoker-1"]}, 400, httpapi.CauseMalformedBody},
		{"invalid UTF-8", apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Header: jsonHeader(), Body: base64.StdEncoding.EncodeToString([]byte("{\"notificationDestination\":\"\xff\"}")), Base64: true, ClientCertPEM: fx.certs["invoker-1"]}, 400, httpapi.CauseMalformedBody},
		{"nesting beyond the bound", apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Header: jsonHeader(), Body: `{"securityInfo":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, ClientCertPEM: fx.certs["invoker-1"]}, 400, httpapi.CauseMalformedBody},
		{"gzip", apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Header: map[string][]string{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, Body: `{}`, ClientCertPEM: fx.certs["invoker-1"]}, 415, httpapi.CauseUnsupportedMedia},
		{"two Content-Types", apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			Header: map[string][]string{"Content-Type": {"application/json", "text/plain"}}, Body: `{}`, ClientCertPEM: fx.certs["invoker-1"]}, 415, httpapi.CauseUnsupportedMedia},
		{"repeated form parameter", apigwevent.Request{Method: "POST", Resource: token, Params: map[string]string{"securityId": "invoker-1"},
			Header: form, Body: "grant_type=client_credentials&client_id=invoker-1&scope=a&scope=b", ClientCertPEM: fx.certs["invoker-1"]}, 400, "invalid_request"},
		{"scope over its bound", apigwevent.Request{Method: "POST", Resource: token, Params: map[string]string{"securityId": "invoker-1"},
			Header: form, Body: "grant_type=client_credentials&client_id=invoker-1&scope=3gpp%23a:" + strings.Repeat("x", 9000), ClientCertPEM: fx.certs["invoker-1"]}, 400, ""},
		{"AEF probing an invoker without a context", apigwevent.Request{Method: "GET", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
			ClientCertPEM: fx.certs["aef-1"]}, 404, "SECURITY_CONTEXT_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := invoke(t, f, tt.req)
			wantStatus(t, resp, tt.status)
			if tt.cause != "" && !strings.Contains(resp.Body, `"`+tt.cause+`"`) {
				t.Errorf("body %s lacks %s", resp.Body, tt.cause)
			}
		})
	}
}

// FuzzHandleEvent: any payload at the Lambda entry point. No panic, never an error return (API
// Gateway would answer 502), never a 500; every answer is JSON with a Content-Type.
func FuzzHandleEvent(f *testing.F) {
	ev, _ := apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"}, Header: jsonHeader(), Body: `{"securityInfo":[]}`}.Event()
	good, _ := json.Marshal(ev)
	for _, seed := range []string{string(good), `{}`, `{"httpMethod":"GET","path":"/.well-known/jwks.json"}`, `{"httpMethod":"GET","path":"//\u0000"}`,
		`{"httpMethod":"POST","path":"/x","body":"%%%","isBase64Encoded":true}`, `[]`, `null`, `{"httpMethod":"PUT","path":"/capif-security/v1/trustedInvokers/a","multiValueHeaders":{"Content-Type":["application/json"]},"body":"{\"a\":"}`} {
		f.Add([]byte(seed))
	}
	fx := newFixture(f)
	fn, err := lambdaapp.New(context.Background(), fx.cfg, httpapi.All, lambdaapp.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Backends: fullapp.Backends})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = fn.Close() })
	f.Fuzz(func(t *testing.T, payload []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := fn.Handle(ctx, payload)
		if err != nil {
			t.Fatalf("Handle returned an error: %v", err)
		}
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d for %q: %s", resp.StatusCode, payload, resp.Body)
		}
		if resp.StatusCode >= 400 && header(resp, "Content-Type") == "" {
			t.Fatalf("an error without Content-Type: %+v", resp)
		}
	})
}
