package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// The requests of the CAPIF clients in the field, replayed byte for byte as they send them (the
// ETSI OpenCAPIF SDK 0.1.20 get_tokens(), the EVOLVED-5G SDK 1.0.13 get_access_token(), and
// OpenCAPIF's Robot test libraries), each over mutual TLS as the invoker or the AEF. Every
// answer passes the harness's checks (the 3GPP schemas of both releases, headers, access log).

// sdkEntry is one securityInfo entry as the OpenCAPIF SDK sends it: prefSecurityMethods copied
// from the AEF profile, placeholder strings in the CCF's members.
func sdkEntry(apiID string) string {
	return `{"prefSecurityMethods":["PSK","PKI","OAUTH"],"authenticationInfo":"string","authorizationInfo":"string","aefId":"` +
		aefSDK + `","apiId":"` + apiID + `"}`
}

// sdkBody is the OpenCAPIF SDK's ServiceSecurity; websocketURI is "string" from the SDK and
// "websocketUri" from the Robot libraries.
func sdkBody(destination, websocketURI string, entries ...string) []byte {
	return []byte(`{"securityInfo":[` + strings.Join(entries, ",") + `],"notificationDestination":"` + destination +
		`","requestTestNotification":true,"websockNotifConfig":{"websocketUri":"` + websocketURI +
		`","requestWebsocketUri":true},"supportedFeatures":"fffffff"}`)
}

// sdkToken is the token request of a field client: client_secret "string" (the SDKs) or none
// (the Robot libraries).
func sdkToken(c *client, inv, scope, secret string) response {
	c.t.Helper()
	f := url.Values{"grant_type": {"client_credentials"}, "client_id": {inv}, "scope": {scope}}
	if secret != "" {
		f.Set("client_secret", secret)
	}
	return c.send(http.MethodPost, tokenPath(inv), "application/x-www-form-urlencoded", []byte(f.Encode()))
}

// testFieldClients: the OpenCAPIF SDK's flow (update, then PUT on 404; one token for every
// API), the EVOLVED-5G SDK's (a PUT with one OAUTH entry, an update per further API, a token per
// API) and the Robot libraries' (no client_secret), then the AEF's read, a revocation and the
// deletion. The SDK lists every method: with the operator's priority OAUTH,PKI,PSK its one token
// request gets both APIs of aef-sdk; without it (the invoker's order) the entries are PKI and
// PSK, and the token request is refused, as it is today.
func testFieldClients(t *testing.T, r *runner) {
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(callback.Close)
	scope := "3gpp#" + aefSDK + ":monitoring-event;" + aefSDK + ":qos-session"
	body := sdkBody(callback.URL+"/capif", "string", sdkEntry("api-sdk-monitoring"), sdkEntry("api-sdk-qos"))

	// openCAPIF SDK get_tokens(): POST …/update first, PUT on 404.
	opencapif := func(r *runner, inv string) []capif.SecurityInformation {
		t.Helper()
		owner := r.as(t, inv)
		wantProblem(t, owner.send(http.MethodPost, invPath(inv)+"/update", "application/json", body), http.StatusNotFound)
		resp := owner.send(http.MethodPut, invPath(inv), "application/json", body)
		wantStatus(t, resp, http.StatusCreated)
		return decode[capif.ServiceSecurity](t, resp).SecurityInfo
	}
	methods := func(sis []capif.SecurityInformation) string {
		var out []string
		for _, si := range sis {
			out = append(out, si.SelSecurityMethod)
		}
		return strings.Join(out, ",")
	}

	// Without a priority: the invoker's order.
	inv := r.freshInvoker(t)
	if got := methods(opencapif(r, inv)); got != "PKI,PSK" {
		t.Errorf("without a priority the SDK's entries got %s, want PKI,PSK", got)
	}
	resp := sdkToken(r.as(t, inv), inv, scope, "string")
	if e := decode[capif.AccessTokenErr](t, resp); resp.status != http.StatusBadRequest || e.Error != capif.UnauthorizedClient {
		t.Errorf("without a priority the SDK's token request got %d %+v, want 400 %s", resp.status, e, capif.UnauthorizedClient)
	}

	// With the operator's priority, one token for both APIs.
	rp := startRunner(t, r.backend, "-security-method-priority", "OAUTH,PKI,PSK", "-notify-timeout", notifyTimeout.String())
	inv = rp.freshInvoker(t)
	if got := methods(opencapif(rp, inv)); got != "OAUTH,OAUTH" {
		t.Errorf("with OAUTH,PKI,PSK the SDK's entries got %s, want OAUTH,OAUTH", got)
	}
	owner := rp.as(t, inv)
	resp = sdkToken(owner, inv, scope, "string")
	wantStatus(t, resp, http.StatusOK)
	if tok := decode[capif.AccessTokenRsp](t, resp); tok.Scope != "3gpp#"+aefSDK+":monitoring-event,qos-session" || tok.TokenType != "Bearer" {
		t.Errorf("token %+v", tok)
	}
	// The Robot libraries' token request: no client_secret.
	wantStatus(t, sdkToken(owner, inv, scope, ""), http.StatusOK)

	// The AEF reads, revokes one API, then deletes the context.
	aef := rp.as(t, aefSDK)
	resp = aef.get(inv, "authenticationInfo=true&authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	if sis := decode[capif.ServiceSecurity](t, resp).SecurityInfo; len(sis) != 2 || sis[0].AuthorizationInfo != "" || sis[0].AuthenticationInfo != "" {
		t.Errorf("the AEF reads %+v (OAUTH entries: no authenticationInfo, and never a placeholder)", sis)
	}
	revoke := []byte(`{"apiInvokerId":"` + inv + `","aefId":"` + aefSDK + `","apiIds":["api-sdk-qos"],"cause":"UNEXPECTED_REASON"}`)
	wantStatus(t, aef.send(http.MethodPost, invPath(inv)+"/delete", "application/json", revoke), http.StatusNoContent)
	wantStatus(t, aef.send(http.MethodDelete, invPath(inv), "", nil), http.StatusNoContent)
	wantProblem(t, aef.get(inv, ""), http.StatusNotFound)

	// EVOLVED-5G SDK get_access_token(): a PUT with one OAUTH entry, an update listing every API
	// so far, a token per API.
	inv = rp.freshInvoker(t)
	owner = rp.as(t, inv)
	evolved := func(apiIDs ...string) []byte {
		var entries []string
		for _, id := range apiIDs {
			entries = append(entries, `{"prefSecurityMethods":["OAUTH"],"aefId":"`+aefSDK+`","apiId":"`+id+`"}`)
		}
		return []byte(`{"securityInfo":[` + strings.Join(entries, ",") + `],"notificationDestination":"https://mynotificationdest.com",` +
			`"requestTestNotification":true,"websockNotifConfig":{"websocketUri":"string","requestWebsocketUri":true},"supportedFeatures":"fff"}`)
	}
	wantStatus(t, owner.send(http.MethodPut, invPath(inv), "application/json", evolved("api-sdk-monitoring")), http.StatusCreated)
	wantStatus(t, sdkToken(owner, inv, "3gpp#"+aefSDK+":monitoring-event", "string"), http.StatusOK)
	wantStatus(t, owner.send(http.MethodPost, invPath(inv)+"/update", "application/json", evolved("api-sdk-monitoring", "api-sdk-qos")), http.StatusOK)
	wantStatus(t, sdkToken(owner, inv, "3gpp#"+aefSDK+":qos-session", "string"), http.StatusOK)

	// The Robot libraries' bodies: their placeholders, websocketUri "websocketUri".
	inv = rp.freshInvoker(t)
	robot := strings.ReplaceAll(sdkEntry("api-sdk-monitoring"), `"string"`, `"X"`)
	robot = strings.Replace(robot, `"authenticationInfo":"X"`, `"authenticationInfo":"authenticationInfo"`, 1)
	robot = strings.Replace(robot, `"authorizationInfo":"X"`, `"authorizationInfo":"authorizationInfo"`, 1)
	resp = rp.as(t, inv).send(http.MethodPut, invPath(inv), "application/json", sdkBody(callback.URL+"/capif", "websocketUri", robot))
	wantStatus(t, resp, http.StatusCreated)
	if si := decode[capif.ServiceSecurity](t, resp).SecurityInfo[0]; si.SelSecurityMethod != capif.OAUTH || si.AuthenticationInfo != "" || si.AuthorizationInfo != "" {
		t.Errorf("the Robot libraries' entry answered %+v", si)
	}
	wantStatus(t, sdkToken(rp.as(t, inv), inv, "3gpp#"+aefSDK+":monitoring-event", ""), http.StatusOK)
}

// testFieldClientPlaceholders: the SDK's PUT over a PSK-only and a PKI-only API. Its
// placeholder authenticationInfo and authorizationInfo are not kept: the AEF's read answers a
// generated PSK and the CA's certificate, and no authorizationInfo.
func testFieldClientPlaceholders(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	resp := r.as(t, inv).send(http.MethodPut, invPath(inv), "application/json",
		sdkBody("https://invoker.example.com/capif", "string", sdkEntry("api-sdk-psk"), sdkEntry("api-sdk-pki")))
	wantStatus(t, resp, http.StatusCreated)
	resp = r.as(t, aefSDK).get(inv, "authenticationInfo=true&authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	sis := decode[capif.ServiceSecurity](t, resp).SecurityInfo
	if len(sis) != 2 {
		t.Fatalf("the AEF reads %+v", sis)
	}
	if k, err := base64.RawURLEncoding.DecodeString(sis[0].AuthenticationInfo); err != nil || len(k) != 32 || sis[0].SelSecurityMethod != capif.PSK {
		t.Errorf("PSK entry: %q, want a generated 256-bit PSK (%v)", sis[0].AuthenticationInfo, err)
	}
	if !strings.HasPrefix(sis[1].AuthenticationInfo, "-----BEGIN CERTIFICATE-----") || sis[1].SelSecurityMethod != capif.PKI {
		t.Errorf("PKI entry: %q, want the CA's certificate PEM", sis[1].AuthenticationInfo)
	}
	for i, si := range sis {
		if si.AuthorizationInfo != "" || strings.Contains(fmt.Sprint(si), "string") {
			t.Errorf("entry %d answers a placeholder: %+v", i, si)
		}
	}
}

// badCertificate is a client certificate for id that the runner must not accept, of kind:
// "self-signed", "expired" (by the runner's own CA) or "server-only" (the runner's CA, for
// server authentication only).
func badCertificate(t *testing.T, r *runner, id, kind string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: id},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	parent, signer := r.ca.Cert, any(r.ca.Key)
	switch kind {
	case "self-signed":
		parent, signer = tmpl, key
	case "expired":
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	case "server-only":
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testBadClientCertificates: a certificate the runner does not trust (self-signed, expired,
// for server authentication only) with a registered CN completes the TLS handshake and gets
// 401 on every route, naming why (an AccessTokenErr invalid_client on the token endpoint); the
// same invoker's good certificate is served.
func testBadClientCertificates(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	oauthContext(t, r, inv)
	body, _ := json.Marshal(serviceSecurity(someDest, aefEntry(aefA, apiA1, "OAUTH")))
	revocation, _ := json.Marshal(capif.SecurityNotification{APIInvokerID: inv, APIIDs: []string{apiA1}, Cause: capif.UnexpectedReason})
	routes := []struct {
		method, path, contentType string
		body                      []byte
	}{
		{http.MethodPut, invPath(inv), "application/json", body},
		{http.MethodPost, invPath(inv) + "/update", "application/json", body},
		{http.MethodGet, invPath(inv), "", nil},
		{http.MethodDelete, invPath(inv), "", nil},
		{http.MethodPost, invPath(inv) + "/delete", "application/json", revocation},
		{http.MethodPost, tokenPath(inv), "application/x-www-form-urlencoded", []byte(grant(inv).Encode())},
	}
	for _, kind := range []string{"self-signed", "expired", "server-only"} {
		for _, id := range []string{inv, aefA} {
			cert := badCertificate(t, r, id, kind)
			c := r.newClient(t, "", nil, id)
			// Sent whatever CAs the server names, as curl sends it (Go's client would send no
			// certificate the server's CAs did not issue).
			c.hc.Transport.(*checking).base.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
			for _, rt := range routes {
				resp, err := c.try(rt.method, rt.path, rt.contentType, rt.body)
				if err != nil {
					t.Fatalf("%s as %s, %s: a transport error (a TLS alert?): %v", kind, id, rt.method+" "+rt.path, err)
				}
				if resp.status != http.StatusUnauthorized || !strings.Contains(string(resp.body), "does not verify") {
					t.Errorf("%s as %s, %s %s: %d %s, want 401 naming why", kind, id, rt.method, rt.path, resp.status, resp.body)
				}
				if rt.path == tokenPath(inv) {
					if e := decode[capif.AccessTokenErr](t, resp); e.Error != capif.InvalidClient {
						t.Errorf("%s: token endpoint answered %+v, want invalid_client", kind, e)
					}
				}
			}
		}
	}
	wantStatus(t, r.as(t, inv).tokenReq(inv, grant(inv)), http.StatusOK)
}
