package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
)

func equalJSON(t testing.TB, a, b any) bool {
	t.Helper()
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(ja, jb)
}

// testValidation: every structural rule answers 400 with the JSON pointer of the culprit, and
// nothing is stored.
func testValidation(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner := r.as(t, inv)
	ok := aefEntry(aefA, apiA1, "OAUTH")
	many := make([]capif.SecurityInformation, security.MaxSecurityInfo+1)
	for i := range many {
		many[i] = aefEntry(aefBulk, fmt.Sprintf("api-bulk-%02d", i%bulkAPIs), "PKI")
	}
	both := aefEntry(aefA, "", "OAUTH")
	both.InterfaceDetails = &ifaceA1
	long := ok
	long.AuthenticationInfo = strings.Repeat("k", security.MaxInfoLength+1)
	longAuthz := ok
	longAuthz.AuthorizationInfo = strings.Repeat("k", security.MaxInfoLength+1)
	nowhere := capif.InterfaceDescription{Fqdn: "nowhere.example.com", Port: ptr(443)}

	for _, tc := range []struct {
		name  string
		body  capif.ServiceSecurity
		param string
	}{
		{"relative destination", serviceSecurity("notifications/here", ok), "/notificationDestination"},
		{"no destination", serviceSecurity("", ok), "/notificationDestination"},
		{"ftp destination", serviceSecurity("ftp://invoker.example.com/n", ok), "/notificationDestination"},
		{"mailto destination", serviceSecurity("mailto:ops@example.com", ok), "/notificationDestination"},
		{"destination without host", serviceSecurity("https:///n", ok), "/notificationDestination"},
		{"destination with userinfo", serviceSecurity("https://user:pw@invoker.example.com/n", ok), "/notificationDestination"},
		{"destination over 2 KiB", serviceSecurity("https://invoker.example.com/"+strings.Repeat("p", security.MaxNotificationDestination), ok), "/notificationDestination"},
		{"metadata endpoint destination", serviceSecurity("http://169.254.169.254/latest/meta-data", ok), "/notificationDestination"},
		{"private destination", serviceSecurity("http://[::ffff:10.1.2.3]:8080/n", ok), "/notificationDestination"},
		{"empty securityInfo", serviceSecurity(someDest), "/securityInfo"},
		{"over 100 entries", serviceSecurity(someDest, many...), "/securityInfo"},
		{"aefId and interfaceDetails", serviceSecurity(someDest, ok, both), "/securityInfo/1"},
		{"neither aefId nor interfaceDetails", serviceSecurity(someDest, capif.SecurityInformation{PrefSecurityMethods: []string{"PSK"}}), "/securityInfo/0"},
		{"empty prefSecurityMethods", serviceSecurity(someDest, aefEntry(aefA, apiA1)), "/securityInfo/0/prefSecurityMethods"},
		{"only unknown methods", serviceSecurity(someDest, ok, aefEntry(aefA, apiA2, "TLS", "psk", "KERBEROS")), "/securityInfo/1/prefSecurityMethods"},
		{"authenticationInfo over 4 KiB", serviceSecurity(someDest, long), "/securityInfo/0/authenticationInfo"},
		{"authorizationInfo over 4 KiB", serviceSecurity(someDest, longAuthz), "/securityInfo/0/authorizationInfo"},
		{"bad supportedFeatures", capif.ServiceSecurity{NotificationDestination: someDest, SecurityInfo: []capif.SecurityInformation{ok}, SupportedFeatures: "xyz"}, "/supportedFeatures"},
		{"bad interface", serviceSecurity(someDest, ifaceEntry(capif.InterfaceDescription{Ipv4Addr: "300.1.1.1"}, "", "PKI")), "/securityInfo/0/interfaceDetails/ipv4Addr"},
		{"unknown aefId", serviceSecurity(someDest, ok, aefEntry("aef-unknown", "", "PKI")), "/securityInfo/1/aefId"},
		{"AEF publishing nothing", serviceSecurity(someDest, aefEntry(aefIdle, "", "PKI")), "/securityInfo/0/aefId"},
		{"invoker as aefId", serviceSecurity(someDest, aefEntry(inv, "", "PKI")), "/securityInfo/0/aefId"},
		{"unknown apiId", serviceSecurity(someDest, aefEntry(aefA, apiB1, "PKI")), "/securityInfo/0/apiId"},
		{"unknown interface", serviceSecurity(someDest, ok, ifaceEntry(nowhere, "", "PKI")), "/securityInfo/1/interfaceDetails"},
		{"apiId not on interface", serviceSecurity(someDest, ifaceEntry(ifaceA1, apiA2, "PKI")), "/securityInfo/0/apiId"},
		{"duplicate target", serviceSecurity(someDest, ok, ok), "/securityInfo/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantInvalid(t, owner.create(inv, tc.body), tc.param)
		})
	}
	// Nothing was stored.
	wantProblem(t, owner.update(inv, serviceSecurity(someDest, ok)), http.StatusNotFound)

	// The same rules on update leave the stored context as it was.
	wantStatus(t, owner.create(inv, serviceSecurity(someDest, ok)), http.StatusCreated)
	wantInvalid(t, owner.update(inv, serviceSecurity("relative", ok)), "/notificationDestination")
	wantInvalid(t, owner.update(inv, serviceSecurity(someDest, ok, aefEntry("aef-unknown", "", "PKI"))), "/securityInfo/1/aefId")
	resp := r.as(t, aefA).get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	if ss := decode[capif.ServiceSecurity](t, resp); ss.NotificationDestination != someDest || len(ss.SecurityInfo) != 1 {
		t.Errorf("a rejected update changed the context: %+v", ss)
	}
}

// testMethodSelection: interface methods over profile methods, all three when neither lists
// any, the intersection over an aefId-only entry's interfaces, the invoker's order; no common
// method is a 400 at prefSecurityMethods.
func testMethodSelection(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner := r.as(t, inv)
	cases := []struct {
		why   string
		entry capif.SecurityInformation
		want  string
	}{
		{"interface methods [OAUTH PKI] over profile [PSK]", ifaceEntry(ifaceA1, "", "PSK", "PKI", "OAUTH"), "PKI"},
		{"aefId+apiId still uses the interface's methods", aefEntry(aefA, apiA1, "PSK", "OAUTH"), "OAUTH"},
		{"profile [PSK OAUTH] when the interface lists none; invoker order", aefEntry(aefA, apiA2, "PKI", "OAUTH", "PSK"), "OAUTH"},
		{"all three when neither lists any", aefEntry(aefA, apiA3, "PKI"), "PKI"},
		{"unknown strings are skipped", aefEntry(aefB, apiB1, "QUANTUM", "OAUTH"), "OAUTH"},
		{"aefId-only: intersection {OAUTH PKI}∩{PSK OAUTH}∩all", aefEntry(aefA, "", "PSK", "PKI", "OAUTH"), "OAUTH"},
		{"aefId-only: all∩{OAUTH PSK}, invoker order", aefEntry(aefB, "", "PKI", "PSK", "OAUTH"), "PSK"},
		{"interface [OAUTH PSK], invoker order", ifaceEntry(ifaceB2, "", "OAUTH", "PSK"), "OAUTH"},
		{"interface without methods + apiId: profile", ifaceEntry(ifaceA2, apiA2, "PSK"), "PSK"},
		{"interface without anything: all three", ifaceEntry(ifaceB1, apiB1, "PKI"), "PKI"},
	}
	var body capif.ServiceSecurity
	body.NotificationDestination = someDest
	for _, c := range cases {
		body.SecurityInfo = append(body.SecurityInfo, c.entry)
	}
	resp := owner.create(inv, body)
	wantStatus(t, resp, http.StatusCreated)
	got := decode[capif.ServiceSecurity](t, resp).SecurityInfo
	if len(got) != len(cases) {
		t.Fatalf("%d entries back for %d sent", len(got), len(cases))
	}
	for i, c := range cases {
		if got[i].SelSecurityMethod != c.want {
			t.Errorf("entry %d (%s): selected %q, want %q", i, c.why, got[i].SelSecurityMethod, c.want)
		}
		if !equalJSON(t, got[i].PrefSecurityMethods, c.entry.PrefSecurityMethods) {
			t.Errorf("entry %d: prefSecurityMethods %v not echoed as sent", i, got[i].PrefSecurityMethods)
		}
	}
	other := r.freshInvoker(t)
	for _, c := range []struct {
		why   string
		entry capif.SecurityInformation
	}{
		{"aef-a's interfaces share only OAUTH", aefEntry(aefA, "", "PKI", "PSK")},
		{"the interface overrides the profile's PSK", aefEntry(aefA, apiA1, "PSK")},
		{"interface [OAUTH PSK]", ifaceEntry(ifaceB2, "", "PKI")},
		{"profile [OAUTH]", aefEntry(aefC, apiC1, "PSK", "PKI", "UNKNOWN")},
	} {
		wantInvalid(t, r.as(t, other).create(other, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PSK"), c.entry)), "/securityInfo/1/prefSecurityMethods")
	}
}

// testContextLifecycle: 201 + Location, feature negotiation, test notification, PUT on an
// existing context, update on a missing one, PKI authenticationInfo.
func testContextLifecycle(t *testing.T, r *runner) {
	inv, plain := r.freshInvoker(t), r.freshInvoker(t)
	owner, a := r.as(t, inv), r.as(t, aefA)
	snk := newSink(t, http.StatusNoContent)

	wantProblem(t, owner.update(inv, serviceSecurity(someDest, aefEntry(aefA, apiA3, "PKI"))), http.StatusNotFound)

	body := serviceSecurity(snk.url("/cb/"+inv), aefEntry(aefA, apiA3, "PKI"), aefEntry(aefA, apiA1, "OAUTH"))
	body.SupportedFeatures = "F"
	body.RequestTestNotification = ptr(true)
	body.WebsockNotifConfig = &capif.WebsockNotifConfig{RequestWebsocketURI: ptr(true), WebsocketURI: "wss://invoker.example.com/ws"}
	resp := owner.create(inv, body)
	wantStatus(t, resp, http.StatusCreated)
	location := resp.header.Get("Location")
	raw := decode[map[string]json.RawMessage](t, resp)
	if string(raw["supportedFeatures"]) != `"5"` {
		t.Errorf("supportedFeatures %s, want \"5\" (F AND the implemented 1 and 3)", raw["supportedFeatures"])
	}
	if _, echoed := raw["websockNotifConfig"]; echoed {
		t.Error("websockNotifConfig echoed although Notification_websocket is not supported")
	}
	// The test notification reached the destination before the 201.
	n := snk.arrived(t)
	var tn capif.TestNotification
	if err := json.Unmarshal(n.body, &tn); err != nil || tn.Subscription != location || n.path != "/cb/"+inv {
		t.Errorf("test notification %s at %s; want subscription %q", n.body, n.path, location)
	}
	ss := decode[capif.ServiceSecurity](t, resp)
	caPEM, err := os.ReadFile(filepath.Join(r.dataDir, devpki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if ss.SecurityInfo[0].SelSecurityMethod != capif.PKI || ss.SecurityInfo[0].AuthenticationInfo != string(caPEM) {
		t.Errorf("PKI entry: authenticationInfo is not the client CA PEM: %+v", ss.SecurityInfo[0])
	}

	// PUT again: 403 pointing at update; nothing changes.
	again := serviceSecurity("https://elsewhere.example.com/n", aefEntry(aefB, apiB1, "PSK"))
	pd := wantProblem(t, owner.create(inv, again), http.StatusForbidden)
	if pd.Cause != security.CauseContextExists || !strings.Contains(pd.Detail, "/update") {
		t.Errorf("403 on an existing context must say so and point to …/update: %+v", pd)
	}
	resp = a.get(inv, "authenticationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	after := decode[capif.ServiceSecurity](t, resp)
	if after.NotificationDestination != body.NotificationDestination || len(after.SecurityInfo) != 2 || after.SupportedFeatures != "5" {
		t.Errorf("context changed by the refused PUT: %+v", after)
	}
	if after.SecurityInfo[0].AuthenticationInfo != string(caPEM) {
		t.Error("GET: PKI authenticationInfo is not the client CA PEM")
	}
	wantProblem(t, r.as(t, aefB).get(inv, ""), http.StatusNotFound)

	// Update: replaces entries and destination; features renegotiated from the request.
	resp = owner.update(inv, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PKI")))
	wantStatus(t, resp, http.StatusOK)
	raw = decode[map[string]json.RawMessage](t, resp)
	if _, has := raw["supportedFeatures"]; has {
		t.Errorf("supportedFeatures %s without a request", raw["supportedFeatures"])
	}
	wantProblem(t, a.get(inv, ""), http.StatusNotFound)
	wantStatus(t, r.as(t, aefB).get(inv, ""), http.StatusOK)
	snk.quiet(t) // no test notification without the request

	// Without supportedFeatures the member is omitted.
	resp = r.as(t, plain).create(plain, serviceSecurity(someDest, aefEntry(aefA, apiA3, "PKI")))
	wantStatus(t, resp, http.StatusCreated)
	if raw := decode[map[string]json.RawMessage](t, resp); raw["supportedFeatures"] != nil {
		t.Errorf("supportedFeatures %s in a response to a request without it", raw["supportedFeatures"])
	}
}

// testInfoFlags: authenticationInfo only when asked for (the CA PEM of a PKI entry); never an
// authorizationInfo, even asked for: the CCF has none to give, and the invoker's is not kept.
func testInfoFlags(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	e := aefEntry(aefA, apiA3, "PKI")
	e.AuthorizationInfo = "invoker-authz-" + inv // a placeholder, ignored
	wantStatus(t, r.as(t, inv).create(inv, serviceSecurity(someDest, e)), http.StatusCreated)
	a := r.as(t, aefA)
	for _, tc := range []struct {
		query        string
		authn, authz bool
	}{
		{"", false, false},
		{"authenticationInfo=false&authorizationInfo=false", false, false},
		{"authenticationInfo=true", true, false},
		{"authorizationInfo=true", false, true},
		{"authenticationInfo=true&authorizationInfo=true", true, true},
	} {
		resp := a.get(inv, tc.query)
		wantStatus(t, resp, http.StatusOK)
		got := decode[capif.ServiceSecurity](t, resp).SecurityInfo[0]
		if (got.AuthenticationInfo != "") != tc.authn || got.AuthorizationInfo != "" {
			t.Errorf("?%s: authenticationInfo %t, authorizationInfo %q", tc.query, got.AuthenticationInfo != "", got.AuthorizationInfo)
		}
		if tc.authn && !strings.Contains(got.AuthenticationInfo, "BEGIN CERTIFICATE") {
			t.Errorf("?%s: authenticationInfo of a PKI entry is not the CA PEM: %q", tc.query, got.AuthenticationInfo)
		}
	}
}

func pskOf(t testing.TB, e capif.SecurityInformation) string {
	t.Helper()
	if e.SelSecurityMethod != capif.PSK {
		t.Fatalf("entry %+v is not PSK", e)
	}
	k, err := base64.RawURLEncoding.DecodeString(e.AuthenticationInfo)
	if err != nil || len(k) != 32 {
		t.Fatalf("PSK %q is not 256 bits of base64url", e.AuthenticationInfo)
	}
	return e.AuthenticationInfo
}

// testPSK: 256-bit base64url keys, one per entry, kept across an update while the entry's
// target is unchanged, new when it changes; an invoker-supplied authenticationInfo is echoed.
func testPSK(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner, b := r.as(t, inv), r.as(t, aefB)
	own := aefEntry(aefB, "", "PSK")
	own.AuthenticationInfo = "invoker-supplied-key-material" // a placeholder: the CCF generates the PSK
	resp := owner.create(inv, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PSK"), aefEntry(aefB, apiB2, "PSK"), aefEntry(aefA, apiA1, "PKI")))
	wantStatus(t, resp, http.StatusCreated)
	created := decode[capif.ServiceSecurity](t, resp).SecurityInfo
	k1, k2 := pskOf(t, created[0]), pskOf(t, created[1])
	if k1 == k2 {
		t.Fatal("two entries share a PSK")
	}

	// b1 unchanged, b2 now addressed by interface (another target), a new aefId-only entry
	// with an invoker-supplied key, which is ignored.
	resp = owner.update(inv, serviceSecurity(someDest, aefEntry(aefB, apiB1, "PSK"), ifaceEntry(ifaceB2, apiB2, "PSK"), own))
	wantStatus(t, resp, http.StatusOK)
	updated := decode[capif.ServiceSecurity](t, resp).SecurityInfo
	if got := pskOf(t, updated[0]); got != k1 {
		t.Error("the PSK of an unchanged entry changed on update")
	}
	k3 := pskOf(t, updated[1])
	if k3 == k1 || k3 == k2 {
		t.Error("an entry with a new target kept an old PSK")
	}
	if k4 := pskOf(t, updated[2]); k4 == own.AuthenticationInfo || k4 == k1 || k4 == k3 {
		t.Errorf("the aefId entry's PSK is %q, want a new generated one", k4)
	}

	// The AEF gets the same keys, uncacheable (the harness checks Cache-Control).
	resp = b.get(inv, "authenticationInfo=true")
	wantStatus(t, resp, http.StatusOK)
	view := decode[capif.ServiceSecurity](t, resp).SecurityInfo
	if len(view) != 3 || view[0].AuthenticationInfo != k1 || view[1].AuthenticationInfo != k3 {
		t.Errorf("aef-b sees %+v", view)
	}
	// An entry that is no longer PSK carries no key.
	resp = owner.update(inv, serviceSecurity("https://invoker.example.com/moved", aefEntry(aefB, apiB1, "OAUTH", "PSK")))
	wantStatus(t, resp, http.StatusOK)
	if sel := decode[capif.ServiceSecurity](t, resp).SecurityInfo[0]; sel.SelSecurityMethod != capif.OAUTH || sel.AuthenticationInfo != "" {
		t.Errorf("OAUTH entry carries authenticationInfo %q", sel.AuthenticationInfo)
	}
}

// testContextTooLarge: a context whose encoding would pass 256 KiB is refused with 413 and not
// stored; one just under it is accepted.
func testContextTooLarge(t *testing.T, r *runner) {
	inv := r.freshInvoker(t)
	owner := r.as(t, inv)
	body := func(n int) capif.ServiceSecurity {
		ss := serviceSecurity(someDest)
		for i := range n {
			e := aefEntry(aefBulk, fmt.Sprintf("api-bulk-%02d", i), "PKI")
			// authorizationFlow and grantType are stored verbatim: 2 × 16 values of 256 bytes.
			for range security.MaxFlows {
				e.AuthorizationFlow = append(e.AuthorizationFlow, strings.Repeat("F", security.MaxIDLength))
				e.GrantType = append(e.GrantType, strings.Repeat("G", security.MaxIDLength))
			}
			ss.SecurityInfo = append(ss.SecurityInfo, e)
		}
		return ss
	}
	pd := wantProblem(t, owner.create(inv, body(bulkAPIs)), http.StatusRequestEntityTooLarge)
	if pd.Cause == "" {
		t.Error("413 without cause")
	}
	wantProblem(t, owner.update(inv, body(1)), http.StatusNotFound) // nothing stored
	wantStatus(t, owner.create(inv, body(28)), http.StatusCreated)
	wantProblem(t, owner.update(inv, body(bulkAPIs)), http.StatusRequestEntityTooLarge)
	resp := r.as(t, aefBulk).get(inv, "")
	wantStatus(t, resp, http.StatusOK)
	if n := len(decode[capif.ServiceSecurity](t, resp).SecurityInfo); n != 28 {
		t.Errorf("%d entries after a refused update, want 28", n)
	}
}
