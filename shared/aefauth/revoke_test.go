package aefauth_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
)

// push is a POST of body to RevokeAuthorization over a connection that presented cert.
func push(body string, cert *devpki.Issued, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://aef.test"+capif.RevokeAuthorizationPath, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert.TLS.Leaf}
		r.TLS.VerifiedChains = [][]*x509.Certificate{{cert.TLS.Leaf}}
	}
	return r
}

func revokeBody(invoker string, apiIDs ...string) string {
	b, _ := json.Marshal(capif.RevokeAuthorizationReq{SupportedFeatures: "0",
		RevokeInfo: capif.SecurityNotification{APIInvokerID: invoker, AefID: aefID, APIIDs: apiIDs, Cause: capif.UnexpectedReason}})
	return string(b)
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestRevokeAuthorization: after the CCF's push, the invoker's tokens issued before it are
// refused for the revoked API; later tokens, other APIs and other invokers are not affected.
func TestRevokeAuthorization(t *testing.T) {
	c := newCCF(t)
	ccfCert, err := c.ca.Client("ccf", 48*time.Hour) // the test moves the clock past RevocationMemory
	if err != nil {
		t.Fatal(err)
	}
	v := c.verifier(t, func(cfg *aefauth.Config) {
		cfg.APIIDs = map[string]string{"api-mon": apiName, "api-qos": "qos-session"}
		cfg.CCFRoots = c.ca.Pool()
	})
	mon, qos := v.For(apiName), v.For("qos-session")
	both := c.claims()
	both.Scope = "3gpp#" + aefID + ":" + apiName + ",qos-session"
	before := c.token(t, both)
	other := c.claims()
	other.Subject = "invoker-2"
	other.Confirmation = &capif.Confirmation{X5tS256: capif.CertThumbprint(c.invokerB.TLS.Leaf.Raw)}
	otherTok := c.token(t, other)
	for _, a := range []*aefauth.API{mon, qos} {
		if _, err := a.Verify(t.Context(), request(before, c.invokerA)); err != nil {
			t.Fatal(err)
		}
	}

	w := serve(v.RevokeAuthorization(), push(revokeBody("invoker-1", "api-mon"), ccfCert, "webhook-id", "n1"))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || strings.TrimSpace(w.Body.String()) != `{"supportedFeatures":"0"}` {
		t.Fatalf("push answered %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	_, err = mon.Verify(t.Context(), request(before, c.invokerA))
	var e *aefauth.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Code != aefauth.CodeInvalidToken || !strings.Contains(e.Description, "revoked") {
		t.Fatalf("a revoked token: %v", err)
	}
	if _, err := qos.Verify(t.Context(), request(before, c.invokerA)); err != nil {
		t.Errorf("another API of the invoker was revoked too: %v", err)
	}
	if _, err := mon.Verify(t.Context(), request(otherTok, c.invokerB)); err != nil {
		t.Errorf("another invoker's token was revoked too: %v", err)
	}
	c.clock.Add(aefauth.Leeway + time.Second)
	after := c.token(t, c.claims())
	if _, err := mon.Verify(t.Context(), request(after, c.invokerA)); err != nil {
		t.Errorf("a token issued after the revocation: %v", err)
	}
	// The same push again (a retry: same webhook-id) does not revoke the later token.
	if w := serve(v.RevokeAuthorization(), push(revokeBody("invoker-1", "api-mon"), ccfCert, "webhook-id", "n1")); w.Code != http.StatusOK {
		t.Fatalf("repeat answered %d", w.Code)
	}
	if _, err := mon.Verify(t.Context(), request(after, c.invokerA)); err != nil {
		t.Errorf("a repeated push revoked a later token: %v", err)
	}
	// An apiId the AEF cannot name revokes every API of the invoker.
	if w := serve(v.RevokeAuthorization(), push(revokeBody("invoker-1", "api-unknown"), ccfCert, "webhook-id", "n2")); w.Code != http.StatusOK {
		t.Fatalf("answered %d", w.Code)
	}
	if _, err := qos.Verify(t.Context(), request(before, c.invokerA)); err == nil {
		t.Error("an unknown apiId did not revoke every API")
	}
	// Forgotten after RevocationMemory (meant to be longer than any token lives): a token issued
	// before the revocation, and somehow still valid, passes again.
	c.clock.Add(aefauth.DefaultRevocationMemory + time.Minute)
	if w := serve(v.RevokeAuthorization(), push(revokeBody("invoker-2", "api-mon"), ccfCert)); w.Code != http.StatusOK {
		t.Fatalf("answered %d", w.Code)
	}
	ancient := both
	ancient.Expiry = c.clock.Now().Add(time.Hour).Unix()
	if _, err := qos.Verify(t.Context(), request(c.token(t, ancient), c.invokerA)); err != nil {
		t.Errorf("a revocation older than RevocationMemory still refuses: %v", err)
	}
}

func TestRevokeAuthorizationRefuses(t *testing.T) {
	c := newCCF(t)
	ccfCert, err := c.ca.Client("ccf", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v := c.verifier(t, func(cfg *aefauth.Config) { cfg.CCFRoots = c.ca.Pool() })
	noRoots := c.verifier(t, nil)
	other, err := devpki.NewCA("the invokers' CA")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Client("ccf", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good := revokeBody("invoker-1", "api-mon")
	if w := serve(noRoots.RevokeAuthorization(), push(good, ccfCert)); w.Code != http.StatusForbidden {
		t.Errorf("without CCFRoots: %d, want 403", w.Code)
	}
	tests := []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"an invoker's certificate", push(good, c.invokerA), http.StatusForbidden},
		{"a certificate named ccf from another CA the listener trusts", push(good, forged), http.StatusForbidden},
		{"the AEF's own certificate", push(good, c.aef), http.StatusForbidden},
		{"no certificate", push(good, nil), http.StatusForbidden},
		{"GET", func() *http.Request { r := push(good, ccfCert); r.Method = http.MethodGet; return r }(), http.StatusMethodNotAllowed},
		{"text/plain", push(good, ccfCert, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType},
		{"a bare SecurityNotification (an old CCF)", push(`{"apiInvokerId":"invoker-1","apiIds":["api-mon"],"cause":"UNEXPECTED_REASON"}`, ccfCert), http.StatusBadRequest},
		{"no supportedFeatures", push(`{"revokeInfo":{"apiInvokerId":"invoker-1","apiIds":["a"],"cause":"X"}}`, ccfCert), http.StatusBadRequest},
		{"another AEF's", push(strings.Replace(good, aefID, "aef-9", 1), ccfCert), http.StatusBadRequest},
		{"no apiIds", push(revokeBody("invoker-1"), ccfCert), http.StatusBadRequest},
		{"malformed", push(`{"revokeInfo":`, ccfCert), http.StatusBadRequest},
		{"trailing data", push(good+"{}", ccfCert), http.StatusBadRequest},
		{"too large", push(`{"revokeInfo":{"apiInvokerId":"`+strings.Repeat("x", 70<<10)+`"}}`, ccfCert), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		w := serve(v.RevokeAuthorization(), tt.req)
		if w.Code != tt.status || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s, want %d problem+json", tt.name, w.Code, w.Header().Get("Content-Type"), w.Body, tt.status)
		}
	}
	// Nothing was revoked by any of them.
	if _, err := v.For(apiName).Verify(t.Context(), request(c.token(t, c.claims()), c.invokerA)); err != nil {
		t.Errorf("a refused push revoked: %v", err)
	}
}
