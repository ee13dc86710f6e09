package lambdaapp_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/internal/testenv"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
	"github.com/capifcore/capif-security/shared/lambdaapp/apigwevent"
)

// Through the Lambda entry point, the token's cnf.x5t#S256 is the thumbprint of the PEM that API
// Gateway's mutual TLS put in the request context, as openssl computes it (RFC 8705 §3.1).
func TestTokenBoundToTheAPIGatewayCertificate(t *testing.T) {
	for _, tool := range []string{"openssl", "basenc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool, "install openssl and coreutils")
		}
	}
	fx := newFixture(t)
	f := fx.function(t, httpapi.All, lambdaapp.Options{})
	cert := fx.certs["invoker-1"]
	wantStatus(t, invoke(t, f, apigwevent.Request{Method: "PUT", Resource: invokerPath, Params: map[string]string{"apiInvokerId": "invoker-1"},
		Header: jsonHeader(), Body: putBody("aef-1", "api-qos-session", capif.OAUTH), ClientCertPEM: cert}), 201)
	resp := invoke(t, f, apigwevent.Request{Method: "POST", Resource: "/capif-security/v1/securities/{securityId}/token", Params: map[string]string{"securityId": "invoker-1"},
		Header: map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: "grant_type=client_credentials&client_id=invoker-1", ClientCertPEM: cert})
	wantStatus(t, resp, 200)
	var rsp capif.AccessTokenRsp
	if err := json.Unmarshal([]byte(resp.Body), &rsp); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rsp.AccessToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf struct {
			X5tS256 string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(t.TempDir(), "invoker.pem")
	if err := os.WriteFile(pemPath, []byte(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "-c", `openssl x509 -in "$1" -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d '='`, "bash", pemPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(out)); claims.Cnf.X5tS256 == "" || claims.Cnf.X5tS256 != want {
		t.Errorf("cnf.x5t#S256 %q, openssl says %q", claims.Cnf.X5tS256, want)
	}
}
