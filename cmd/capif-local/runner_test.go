package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
)

// testRestartPersistence: contexts, registry and signing key survive a restart on the same data
// (the second start imports no registry).
func testRestartPersistence(t *testing.T, r *runner) {
	r1 := startRunner(t, r.backend)
	inv := r1.freshInvoker(t)
	sinv, secret := r1.freshSecretInvoker(t)
	c := r1.as(t, inv)
	resp := c.create(inv, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PSK"), aefEntry(aefA, "", "OAUTH")))
	wantStatus(t, resp, http.StatusCreated)
	psk := pskOf(t, decode[capif.ServiceSecurity](t, resp).SecurityInfo[0])
	oauthContext(t, r1, sinv)
	resp = c.tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	before := decode[capif.AccessTokenRsp](t, resp).AccessToken
	r1.verifyToken(t, r1.jwks(t), before)
	resp = r1.as(t, aefB).get(inv, "authenticationInfo=true&authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	viewBefore := decode[capif.ServiceSecurity](t, resp)

	r2 := r1.restart(t)
	// The context and its PSK.
	resp = r2.as(t, aefB).get(inv, "authenticationInfo=true&authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	viewAfter := decode[capif.ServiceSecurity](t, resp)
	if !equalJSON(t, viewAfter, viewBefore) || viewAfter.SecurityInfo[0].AuthenticationInfo != psk {
		t.Errorf("context after restart %+v, before %+v", viewAfter, viewBefore)
	}
	// The signing key: the old token verifies with the new JWKS, and new tokens use the same kid.
	keys := r2.jwks(t)
	r2.verifyToken(t, keys, before)
	resp = r2.as(t, inv).tokenReq(inv, grant(inv))
	wantStatus(t, resp, http.StatusOK)
	after := decode[capif.AccessTokenRsp](t, resp).AccessToken
	r2.verifyToken(t, keys, after)
	if kidOf(t, after) != kidOf(t, before) {
		t.Errorf("kid changed across the restart: %q → %q", kidOf(t, before), kidOf(t, after))
	}
	// The registry: AEFs, invokers and onboarding secrets.
	wantTokenErr(t, r2.as(t, sinv).tokenReq(sinv, grant(sinv, "client_secret", "wrong")), http.StatusUnauthorized, capif.InvalidClient)
	wantStatus(t, r2.as(t, sinv).tokenReq(sinv, grant(sinv, "client_secret", secret)), http.StatusOK)
	wantProblem(t, r2.as(t, inv).create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA1, "PKI"))), http.StatusForbidden)
	fresh := r1.freshInvoker(t)
	wantStatus(t, r2.as(t, fresh).create(fresh, serviceSecurity(someDest, aefEntry(aefC, apiC1, "OAUTH"))), http.StatusCreated)
	// An update after the restart keeps the PSK of the unchanged entry.
	resp = r2.as(t, inv).update(inv, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PSK")))
	wantStatus(t, resp, http.StatusOK)
	if got := pskOf(t, decode[capif.ServiceSecurity](t, resp).SecurityInfo[0]); got != psk {
		t.Error("PSK changed on the first update after the restart")
	}
}

func kidOf(t testing.TB, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	var h struct {
		Kid string `json:"kid"`
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &h); err != nil || h.Kid == "" {
		t.Fatalf("token header %s has no kid", b)
	}
	return h.Kid
}

// testConcurrency: 50 token requests and 20 updates from one invoker at once. No 5xx (a 503 +
// Retry-After only where the back end throttles), every token verifies, and the final state is
// exactly one of the updates.
func testConcurrency(t *testing.T, r *runner) {
	const tokens, updates = 50, 20
	inv := r.freshInvoker(t)
	owner := r.as(t, inv)
	body := func(tag string) capif.ServiceSecurity {
		e1, e2, e3 := aefEntry(aefA, "", "OAUTH"), aefEntry(aefB, apiB1, "PSK"), aefEntry(aefB, apiB2, "OAUTH")
		// authorizationFlow is stored and answered verbatim: it tags each entry with its update.
		e1.AuthorizationFlow, e2.AuthorizationFlow, e3.AuthorizationFlow = []string{tag}, []string{tag}, []string{tag}
		return serviceSecurity("https://invoker.example.com/cb/"+tag, e1, e2, e3)
	}
	resp := owner.create(inv, body("initial"))
	wantStatus(t, resp, http.StatusCreated)
	psk := pskOf(t, decode[capif.ServiceSecurity](t, resp).SecurityInfo[1])

	type result struct {
		tag  string
		resp response
		err  error
	}
	start := make(chan struct{})
	results := make(chan result, tokens+updates)
	var wg sync.WaitGroup
	for i := range tokens + updates {
		wg.Go(func() {
			<-start
			if i < tokens {
				resp, err := owner.try(http.MethodPost, tokenPath(inv), "application/x-www-form-urlencoded", []byte(grant(inv).Encode()))
				results <- result{resp: resp, err: err}
				return
			}
			tag := fmt.Sprintf("update-%02d", i-tokens)
			b, _ := json.Marshal(body(tag))
			resp, err := owner.try(http.MethodPost, invPath(inv)+"/update", "application/json", b)
			results <- result{tag: tag, resp: resp, err: err}
		})
	}
	close(start)
	wg.Wait()
	close(results)

	keys := r.jwks(t)
	jtis := map[string]bool{}
	applied := map[string]bool{}
	throttled := 0
	for res := range results {
		switch {
		case res.err != nil:
			t.Errorf("request failed: %v", res.err)
		case res.resp.status == http.StatusServiceUnavailable && r.backend.throttles:
			throttled++ // the harness checked Retry-After
		case res.tag == "":
			wantStatus(t, res.resp, http.StatusOK)
			claims := r.verifyToken(t, keys, decode[capif.AccessTokenRsp](t, res.resp).AccessToken)
			jti, _ := claims["jti"].(string)
			if jtis[jti] {
				t.Errorf("jti %q issued twice", jti)
			}
			jtis[jti] = true
		default:
			wantStatus(t, res.resp, http.StatusOK)
			ss := decode[capif.ServiceSecurity](t, res.resp)
			checkTagged(t, ss, res.tag)
			if got := pskOf(t, ss.SecurityInfo[1]); got != psk {
				t.Errorf("%s: the PSK of an unchanged entry changed", res.tag)
			}
			applied[res.tag] = true
		}
	}
	if throttled > 0 {
		t.Logf("%d of %d requests throttled (503 + Retry-After)", throttled, tokens+updates)
	}
	if len(applied) == 0 {
		t.Fatal("no update succeeded")
	}

	// The final state is one whole update: destination and every entry carry the same tag.
	resp = r.as(t, aefA).get(inv, "authorizationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	va := decode[capif.ServiceSecurity](t, resp)
	resp = r.as(t, aefB).get(inv, "authorizationInfo=true&authenticationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	vb := decode[capif.ServiceSecurity](t, resp)
	final := strings.TrimPrefix(va.NotificationDestination, "https://invoker.example.com/cb/")
	if !applied[final] {
		t.Fatalf("final destination %q is not one of the applied updates", va.NotificationDestination)
	}
	all := capif.ServiceSecurity{NotificationDestination: vb.NotificationDestination, SecurityInfo: append(va.SecurityInfo, vb.SecurityInfo...)}
	checkTagged(t, all, final)
	if len(all.SecurityInfo) != 3 || vb.SecurityInfo[0].AuthenticationInfo != psk {
		t.Errorf("final state %+v", all)
	}
}

// checkTagged: the destination and every entry belong to the update tagged tag.
func checkTagged(t testing.TB, ss capif.ServiceSecurity, tag string) {
	t.Helper()
	if ss.NotificationDestination != "https://invoker.example.com/cb/"+tag {
		t.Errorf("destination %q, want update %s", ss.NotificationDestination, tag)
	}
	for i, e := range ss.SecurityInfo {
		if len(e.AuthorizationFlow) != 1 || e.AuthorizationFlow[0] != tag {
			t.Errorf("entry %d from %q, destination from %s: a mix of updates", i, e.AuthorizationFlow, tag)
		}
	}
}

// testCertCommand: `capif-local cert` writes a cert/key pair that the runner accepts as that id.
func testCertCommand(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := mainErr(context.Background(), []string{"cert", "-data", r.dataDir, "-id", inv, "-out", out, "-valid-for", "2h"}, &stdout, &stderr); err != nil {
		t.Fatalf("cert: %v (%s)", err, stderr.String())
	}
	certPath, keyPath := filepath.Join(out, inv+".pem"), filepath.Join(out, inv+"-key.pem")
	if !strings.Contains(stdout.String(), certPath) || !strings.Contains(stdout.String(), keyPath) {
		t.Errorf("cert output %q does not name %s and %s", stdout.String(), certPath, keyPath)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != inv || time.Until(leaf.NotAfter) > 2*time.Hour || time.Until(leaf.NotAfter) < 110*time.Minute {
		t.Errorf("certificate CN %q valid until %v; want %q for 2h", leaf.Subject.CommonName, leaf.NotAfter, inv)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not verify for client auth against the data dir's CA: %v", err)
	}
	c := r.newClient(t, inv, []tls.Certificate{pair}, inv)
	wantStatus(t, c.create(inv, serviceSecurity(someDest, aefEntry(aefA, apiA3, "PKI"))), http.StatusCreated)

	// Ids that are not file names are made safe; the CN stays the id.
	stdout.Reset()
	if err := mainErr(context.Background(), []string{"cert", "-data", r.dataDir, "-id", "a/b c%d", "-out", out}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if pair, err := tls.LoadX509KeyPair(filepath.Join(out, "a_b_c_d.pem"), filepath.Join(out, "a_b_c_d-key.pem")); err != nil {
		t.Errorf("sanitised file names: %v", err)
	} else if leaf, _ := x509.ParseCertificate(pair.Certificate[0]); leaf.Subject.CommonName != "a/b c%d" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}
	// The CCF's own name is refused (the default and a configured one), saying where its
	// certificate is; no file is written.
	for _, args := range [][]string{{"-id", "ccf"}, {"-id", "core-1", "-ccf-name", "core-1"}} {
		err := mainErr(context.Background(), append([]string{"cert", "-data", r.dataDir, "-out", out}, args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(r.dataDir, "ccf.pem")) {
			t.Errorf("cert %v: %v, want a refusal naming DATA/ccf.pem", args, err)
		}
		if _, err := os.Stat(filepath.Join(out, args[1]+".pem")); err == nil {
			t.Errorf("cert %v wrote a certificate", args)
		}
	}
	// Default output directory: DATA/clients, on a data dir of its own (creating its CA).
	own := t.TempDir()
	if err := mainErr(context.Background(), []string{"cert", "-data", own, "-id", "x"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(own, "clients", "x.pem"), filepath.Join(own, "clients", "x-key.pem")); err != nil {
		t.Error(err)
	}
	if _, err := devpki.LoadOrCreateCA(own); err != nil {
		t.Error(err)
	}
	for _, args := range [][]string{
		{"cert", "-data", own},
		{"cert", "-data", own, "-id", "y", "-valid-for", "soon"},
		{"cert", "-nope"},
	} {
		if err := mainErr(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// testGracefulShutdown: cancelling the runner's context lets an in-flight request finish, then
// run returns nil.
func testGracefulShutdown(t *testing.T, r *runner) {
	r2 := startRunner(t, r.backend)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	blocking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(blocking.Close)
	t.Cleanup(unblock) // runs before blocking.Close

	inv := r2.freshInvoker(t)
	wantStatus(t, r2.as(t, inv).create(inv, serviceSecurity(blocking.URL+"/cb", aefEntry(aefA, apiA1, "OAUTH"))), http.StatusCreated)
	a := r2.as(t, aefA)
	type result struct {
		resp response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := a.try(http.MethodDelete, invPath(inv), "", nil)
		done <- result{resp, err}
	}()
	select {
	case <-entered: // the DELETE is inside its handler, delivering the notification
	case res := <-done:
		t.Fatalf("the DELETE finished before reaching the notification: %+v %v", res.resp, res.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the notification never arrived")
	}
	r2.cancel()
	select {
	case err := <-r2.done:
		r2.done <- err
		t.Fatalf("run returned (%v) while a request was in flight", err)
	default:
	}
	unblock()
	res := <-done
	if res.err != nil {
		t.Fatalf("the in-flight request failed during shutdown: %v", res.err)
	}
	wantStatus(t, res.resp, http.StatusNoContent)
	if err := r2.stop(t); err != nil {
		t.Fatal(err)
	}
	// The listener is gone.
	if _, err := r2.as(t, aefA).try(http.MethodGet, invPath(inv), "", nil); err == nil {
		t.Error("the runner still answers after shutdown")
	}
}
