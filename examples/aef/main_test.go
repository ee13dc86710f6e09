package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/examples/internal/ccftest"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
)

// The example AEF, started in-process against a JWKS served over mutual TLS: the token lets its
// own invoker in, and the same token replayed on another invoker's connection is refused.
func TestExampleAEF(t *testing.T) {
	ccf := ccftest.Start(t)
	ccf.Client("aef-1")
	_, _, invoker1 := ccf.Client("invoker-1")
	_, _, invoker2 := ccf.Client("invoker-2")

	ctx, cancel := context.WithCancel(t.Context())
	addrc, errc := make(chan string, 1), make(chan error, 1)
	go func() {
		errc <- run(ctx, config{addr: "127.0.0.1:0", dataDir: ccf.Dir, ccf: ccf.URL, issuer: ccftest.Issuer, aefID: "aef-1", api: "monitoring-event", apiID: "api-monitoring-event"},
			func(addr string) { addrc <- addr })
	}()
	var url, root string
	select {
	case addr := <-addrc:
		url, root = "https://"+addr+"/monitoring-event/subscriptions", "https://"+addr
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}

	call := func(cert *devpki.Issued, tok string) (int, string, string) {
		t.Helper()
		cfg := &tls.Config{RootCAs: ccf.CA.Pool()}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{cert.TLS}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)
	}

	good := ccf.Token("3gpp#aef-1:monitoring-event", invoker1)
	tests := []struct {
		name   string
		cert   *devpki.Issued
		token  string
		status int
		want   string // in the body (200) or the challenge
	}{
		{"the invoker's own token and certificate", invoker1, good, 200, `"apiInvokerId":"invoker-1"`},
		{"the token replayed from another certificate", invoker2, good, 401, `error="invalid_token"`},
		{"the token replayed without a certificate", nil, good, 401, `error="invalid_token"`},
		{"no token", invoker1, "", 401, `Bearer realm="aef-1"`},
		{"a token for another API", invoker1, ccf.Token("3gpp#aef-1:qos-session", invoker1), 403, `error="insufficient_scope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge, body := call(tc.cert, tc.token)
			if status != tc.status || !strings.Contains(body+challenge, tc.want) {
				t.Errorf("%d %q %s, want %d with %s", status, challenge, body, tc.status, tc.want)
			}
		})
	}

	// The CCF pushes a revocation (the service's own notifier, with the CCF's certificate): the
	// AEF answers 200 RevokeAuthorizationRsp, and the invoker's token no longer gets in.
	_, _, ccfCert := ccf.Client("ccf")
	n := notify.New(notify.Options{AllowLoopback: true, CCF: identity(ccf.CA.Pool(), func() (*tls.Certificate, error) { return &ccfCert.TLS, nil })})
	revokeReq := capif.RevokeAuthorizationReq{SupportedFeatures: "0", RevokeInfo: capif.SecurityNotification{APIInvokerID: "invoker-1", AefID: "aef-1",
		APIIDs: []string{"api-monitoring-event"}, Cause: capif.UnexpectedReason}}
	if err := n.Notify(t.Context(), security.Delivery{ID: "n1", Kind: security.ToAEF, Destination: root + capif.RevokeAuthorizationPath, Body: revokeReq}); err != nil {
		t.Fatalf("push: %v", err)
	}
	if status, challenge, _ := call(invoker1, good); status != 401 || !strings.Contains(challenge, "revoked") {
		t.Errorf("the revoked token: %d %q, want 401 naming the revocation", status, challenge)
	}
	// An invoker cannot push one.
	n = notify.New(notify.Options{AllowLoopback: true, CCF: identity(ccf.CA.Pool(), func() (*tls.Certificate, error) { return &invoker2.TLS, nil })})
	revokeReq.RevokeInfo.APIInvokerID = "invoker-2"
	if err := n.Notify(t.Context(), security.Delivery{ID: "n2", Kind: security.ToAEF, Destination: root + capif.RevokeAuthorizationPath, Body: revokeReq}); !errors.Is(err, security.ErrNotAccepted) {
		t.Errorf("an invoker's push: %v, want refused (403)", err)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run after shutdown: %v", err)
	}
}

// identity is a notify.Options.CCF with these roots and certificate.
func identity(roots *x509.CertPool, cert func() (*tls.Certificate, error)) func(context.Context) (notify.CCFIdentity, error) {
	return func(context.Context) (notify.CCFIdentity, error) {
		return notify.CCFIdentity{Certificate: cert, AEFRoots: roots}, nil
	}
}
