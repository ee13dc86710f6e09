package security_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
)

func targets(ts ...string) []security.Target {
	names := map[string]string{"apiA": "alpha", "apiB": "beta", "apiC": "gamma", "apiD": "delta"}
	var out []security.Target
	for _, t := range ts {
		aef, api, _ := strings.Cut(t, "/")
		out = append(out, security.Target{AefID: aef, APIID: api, APIName: names[api]})
	}
	return out
}

func withAPI(e capif.SecurityInformation, apiID string) capif.SecurityInformation {
	e.APIID = apiID
	return e
}

func TestCreateResolvesAndSelects(t *testing.T) {
	t.Parallel()
	upper := ifB
	upper.Fqdn = "B.EXAMPLE.COM."
	tests := []struct {
		name    string
		entry   capif.SecurityInformation
		sel     capif.SecurityMethod
		targets []security.Target
		bad     string // invalid param pointer instead of a result
	}{
		{"aefId: intersection of every interface of every API", entry("aef1", capif.PSK, capif.OAUTH), capif.OAUTH, targets("aef1/apiA", "aef1/apiB", "aef1/apiD"), ""},
		{"aefId: no preference in the intersection", entry("aef1", capif.PSK, capif.PKI), "", nil, "/securityInfo/0/prefSecurityMethods"},
		{"aefId+apiId: that API only", withAPI(entry("aef1", capif.PSK), "apiB"), capif.PSK, targets("aef1/apiB"), ""},
		{"aefId+apiId: interface methods beat the profile's", withAPI(entry("aef1", capif.PKI, capif.OAUTH), "apiA"), capif.OAUTH, targets("aef1/apiA"), ""},
		{"aefId+apiId: the API's interfaces intersect", withAPI(entry("aef1", capif.PKI), "apiA"), "", nil, "/securityInfo/0/prefSecurityMethods"},
		{"interface without methods: the profile's", ifEntry(ifA2, capif.PSK, capif.PKI), capif.PKI, targets("aef1/apiA"), ""},
		{"interface with methods: its own", ifEntry(ifA1, capif.PKI, capif.OAUTH), capif.OAUTH, targets("aef1/apiA"), ""},
		{"interface with methods: nothing else", ifEntry(ifA1, capif.PKI, capif.PSK), "", nil, "/securityInfo/0/prefSecurityMethods"},
		{"no methods at any level: all three", ifEntry(ifB, capif.PSK), capif.PSK, targets("aef1/apiB"), ""},
		{"invoker's order wins", ifEntry(ifB, capif.OAUTH, capif.PSK, capif.PKI), capif.OAUTH, targets("aef1/apiB"), ""},
		{"unknown method is skipped", ifEntry(ifB, "TLS_FUTURE", capif.PKI), capif.PKI, targets("aef1/apiB"), ""},
		{"canonically identical interface", ifEntry(upper, capif.PKI), capif.PKI, targets("aef1/apiB"), ""},
		{"domainName profile", entry("aef2", capif.PKI, capif.PSK), capif.PSK, targets("aef2/apiC", "aef2/apiD"), ""},
		{"interface shared by two AEFs", ifEntry(ifShared, capif.OAUTH), capif.OAUTH, targets("aef1/apiD", "aef2/apiD"), ""},
		{"interface + apiId", withAPI(ifEntry(ifShared, capif.PSK), "apiD"), capif.PSK, targets("aef1/apiD", "aef2/apiD"), ""},
		{"interface + apiId not served there", withAPI(ifEntry(ifShared, capif.PSK), "apiA"), "", nil, "/securityInfo/0/apiId"},
		{"unknown AEF", entry("aef9", capif.PSK), "", nil, "/securityInfo/0/aefId"},
		{"AEF that publishes nothing", entry("aef3", capif.PSK), "", nil, "/securityInfo/0/aefId"},
		{"an invoker's id as aefId", entry("inv2", capif.PSK), "", nil, "/securityInfo/0/aefId"},
		{"API of another AEF", withAPI(entry("aef1", capif.PSK), "apiC"), "", nil, "/securityInfo/0/apiId"},
		{"unknown API", withAPI(entry("aef1", capif.PSK), "apiZ"), "", nil, "/securityInfo/0/apiId"},
		{"unknown interface", ifEntry(capif.InterfaceDescription{Fqdn: "z.example.com", Port: intp(443)}, capif.PSK), "", nil, "/securityInfo/0/interfaceDetails"},
		{"other port", ifEntry(capif.InterfaceDescription{Fqdn: "a.example.com", Port: intp(8443)}, capif.OAUTH), "", nil, "/securityInfo/0/interfaceDetails"},
		{"other prefix", ifEntry(capif.InterfaceDescription{Fqdn: "b.example.com", Port: intp(443), APIPrefix: "/gamma"}, capif.PSK), "", nil, "/securityInfo/0/interfaceDetails"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			out, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(tt.entry))
			if tt.bad != "" {
				wantError(t, err, security.KindInvalid, security.CauseInvalidParameter, tt.bad)
				if sc := e.stored("inv1"); sc != nil {
					t.Errorf("a rejected request stored %s", dump(sc))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := out.SecurityInfo[0].SelSecurityMethod; got != tt.sel {
				t.Errorf("selSecurityMethod %q, want %q", got, tt.sel)
			}
			sc := e.stored("inv1")
			if sc == nil || len(sc.Entries) != 1 {
				t.Fatalf("stored %s", dump(sc))
			}
			got := slices.Clone(sc.Entries[0].Targets)
			slices.SortFunc(got, func(a, b security.Target) int { return strings.Compare(a.AefID+a.APIID, b.AefID+b.APIID) })
			if !reflect.DeepEqual(got, tt.targets) {
				t.Errorf("targets %+v, want %+v", got, tt.targets)
			}
			if sc.Entries[0].SelSecurityMethod != tt.sel {
				t.Errorf("stored method %q, want %q", sc.Entries[0].SelSecurityMethod, tt.sel)
			}
		})
	}
}

// apiId narrows an entry whether or not SecurityInfoPerAPI was negotiated.
func TestAPIIDHonouredWithoutFeature(t *testing.T) {
	t.Parallel()
	for _, features := range []string{"", "0", "1", "4", "F"} {
		e := newEnv(t)
		req := request(withAPI(entry("aef1", capif.PSK), "apiB"))
		req.SupportedFeatures = features
		e.create("inv1", req)
		if got := e.stored("inv1").Entries[0].Targets; !reflect.DeepEqual(got, targets("aef1/apiB")) {
			t.Errorf("supportedFeatures %q: targets %+v", features, got)
		}
	}
}

func TestCreateReportsEveryBadEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(
		entry("aef9", capif.PSK),
		entry("aef1", capif.PSK),
		entry("aef2", capif.PSK),
		entry("aef2", capif.PSK), // the same target as entry 2
		withAPI(entry("aef1", capif.OAUTH), "apiB"),
	))
	wantError(t, err, security.KindInvalid, security.CauseInvalidParameter,
		"/securityInfo/0/aefId", "/securityInfo/1/prefSecurityMethods", "/securityInfo/3")
}

func TestCreateResponseAndStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req := standardRequest()
	req.WebsockNotifConfig = &capif.WebsockNotifConfig{RequestWebsocketURI: new(true)}
	out := e.create("inv1", req)

	if out.NotificationDestination != destInv1 || out.SupportedFeatures != "" || out.WebsockNotifConfig != nil {
		t.Errorf("response header fields: %s", dump(out))
	}
	raw, _ := json.Marshal(out)
	if strings.Contains(string(raw), "supportedFeatures") || strings.Contains(string(raw), "websockNotifConfig") {
		t.Errorf("absent supportedFeatures / websocket must be omitted: %s", raw)
	}
	wantSel := []capif.SecurityMethod{capif.OAUTH, capif.PSK, capif.PKI}
	if len(out.SecurityInfo) != 3 {
		t.Fatalf("response %s", dump(out))
	}
	for i, si := range out.SecurityInfo {
		if si.SelSecurityMethod != wantSel[i] {
			t.Errorf("entry %d: selSecurityMethod %q, want %q", i, si.SelSecurityMethod, wantSel[i])
		}
		if !slices.Equal(si.PrefSecurityMethods, req.SecurityInfo[i].PrefSecurityMethods) {
			t.Errorf("entry %d: prefSecurityMethods %v not echoed", i, si.PrefSecurityMethods)
		}
		if si.AefID != req.SecurityInfo[i].AefID || !reflect.DeepEqual(si.InterfaceDetails, req.SecurityInfo[i].InterfaceDetails) {
			t.Errorf("entry %d: address not echoed: %s", i, dump(si))
		}
	}
	// OAUTH: nothing; PSK: a 256-bit base64url key; PKI: the client CA.
	if out.SecurityInfo[0].AuthenticationInfo != "" {
		t.Errorf("OAUTH entry authenticationInfo %q", out.SecurityInfo[0].AuthenticationInfo)
	}
	psk := out.SecurityInfo[1].AuthenticationInfo
	if k, err := base64.RawURLEncoding.DecodeString(psk); err != nil || len(k) != 32 {
		t.Errorf("PSK %q is not 32 bytes of base64url (%v)", psk, err)
	}
	if out.SecurityInfo[2].AuthenticationInfo != clientCA {
		t.Errorf("PKI entry authenticationInfo %q, want the client CA", out.SecurityInfo[2].AuthenticationInfo)
	}

	sc := e.stored("inv1")
	if sc.Version != 1 || sc.APIInvokerID != "inv1" || sc.NotificationDestination != destInv1 {
		t.Errorf("stored %s", dump(sc))
	}
	if sc.Entries[1].PSK != psk {
		t.Errorf("stored PSK %q, answered %q", sc.Entries[1].PSK, psk)
	}
	stored, _ := json.Marshal(sc)
	if strings.Contains(string(stored), "TEST CA") {
		t.Error("the client CA PEM is stored in the context; it is to be added when read")
	}
	if sc.Entries[0].PSK != "" || sc.Entries[2].PSK != "" {
		t.Error("a PSK was generated for a non-PSK entry")
	}

	// A second invoker's PSK is another key.
	out2 := e.create("inv2", &capif.ServiceSecurity{NotificationDestination: "https://inv2.example.com/", SecurityInfo: []capif.SecurityInformation{entry("aef2", capif.PSK)}})
	if out2.SecurityInfo[0].AuthenticationInfo == psk {
		t.Error("two entries got the same PSK")
	}
}

// An invoker's authenticationInfo and authorizationInfo (clients in the field send placeholders
// there) are neither kept nor echoed: the CCF answers what it generates (a PSK, the CA PEM), and
// never an authorizationInfo. A debug line says a value was ignored, never the value.
func TestInvokerSuppliedInfoIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.logs.Reset()
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := security.New(e.hooks, e.db, e.signer, e.notifier, e.clock, func() security.Config { c := e.cfg; c.Logger = logger; return c }())
	req := request(entry("aef2", capif.PSK), ifEntry(ifShared, capif.PKI))
	for i := range req.SecurityInfo {
		req.SecurityInfo[i].AuthenticationInfo = "placeholder-authn"
		req.SecurityInfo[i].AuthorizationInfo = "placeholder-authz"
	}
	out, err := svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req)
	if err != nil {
		t.Fatal(err)
	}
	psk := e.stored("inv1").Entries[0].PSK
	if psk == "" || out.SecurityInfo[0].AuthenticationInfo != psk || out.SecurityInfo[1].AuthenticationInfo != clientCA {
		t.Errorf("answered %s, want the generated PSK and the CA", dump(out.SecurityInfo))
	}
	if strings.Contains(dump(out), "placeholder") || strings.Contains(dump(e.stored("inv1")), "placeholder") {
		t.Errorf("an invoker's value was kept: %s %s", dump(out), dump(e.stored("inv1")))
	}
	if !strings.Contains(e.logs.String(), "invoker-supplied security information ignored") || strings.Contains(e.logs.String(), "placeholder") {
		t.Errorf("log %s", e.logs.String())
	}
	for _, q := range []security.InvokerInfoQuery{{}, {AuthenticationInfo: true}, {AuthorizationInfo: true}, {AuthenticationInfo: true, AuthorizationInfo: true}} {
		got, err := e.svc.GetInvokerInfo(ctx, security.Caller{ID: "aef2"}, "inv1", q)
		if err != nil || len(got.SecurityInfo) != 2 {
			t.Fatalf("aef2 sees %s, %v", dump(got), err)
		}
		want := []string{"", ""}
		if q.AuthenticationInfo {
			want = []string{psk, clientCA}
		}
		for i, si := range got.SecurityInfo {
			if si.AuthenticationInfo != want[i] || si.AuthorizationInfo != "" {
				t.Errorf("%+v entry %d: authenticationInfo %q authorizationInfo %q, want %q and none", q, i, si.AuthenticationInfo, si.AuthorizationInfo, want[i])
			}
		}
	}
}

// A context stored before the placeholders were ignored: an invoker's values are not answered;
// its PSK entry that got no PSK then answers none, and gets one at its next write.
func TestStoredInvokerInfoNotAnswered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", request(entry("aef2", capif.PSK)))
	// The stored record as the earlier release wrote it: the invoker's value, no PSK.
	var raw map[string]any
	b, _ := json.Marshal(e.stored("inv1"))
	_ = json.Unmarshal(b, &raw)
	en := raw["entries"].([]any)[0].(map[string]any)
	delete(en, "psk")
	en["authenticationInfo"], en["authorizationInfo"] = "invoker-authn", "invoker-authz"
	b, _ = json.Marshal(raw)
	var old security.SecurityContext
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Replace(ctx, &old, nil); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.GetInvokerInfo(ctx, security.Caller{ID: "aef2"}, "inv1", security.InvokerInfoQuery{AuthenticationInfo: true, AuthorizationInfo: true})
	if err != nil {
		t.Fatal(err)
	}
	if si := got.SecurityInfo[0]; si.AuthenticationInfo != "" || si.AuthorizationInfo != "" {
		t.Errorf("answered %s, want neither value", dump(si))
	}
	out, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK)))
	if err != nil {
		t.Fatal(err)
	}
	if psk := e.stored("inv1").Entries[0].PSK; psk == "" || out.SecurityInfo[0].AuthenticationInfo != psk {
		t.Errorf("after the next write: %s", dump(out.SecurityInfo[0]))
	}
}

func TestFeaturesAndTestNotification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		features  string
		request   *bool
		negotiate string
		notify    bool
	}{
		{"", nil, "", false},
		{"", new(true), "", false},     // Notification_test_event not negotiated
		{"F", nil, "5", false},         // negotiated, not asked for
		{"F", new(false), "5", false},  // asked not to
		{"F", new(true), "5", true},    // negotiated and asked for
		{"1", new(true), "1", true},    // the test event feature alone
		{"4", new(true), "4", false},   // only SecurityInfoPerAPI
		{"0E", new(true), "4", false},  // everything but bit 1
		{"01F", new(true), "5", true},  // multi-digit
		{"F0", new(true), "0", false},  // only unknown features
		{"2", new(true), "0", false},   // websocket alone is never negotiated
		{"abc", new(true), "4", false}, // lower case, three digits
	}
	for _, tt := range tests {
		e := newEnv(t)
		req := standardRequest()
		req.SupportedFeatures = tt.features
		req.RequestTestNotification = tt.request
		out := e.create("inv1", req)
		if out.SupportedFeatures != tt.negotiate || e.stored("inv1").SupportedFeatures != tt.negotiate {
			t.Errorf("supportedFeatures %q: answered %q, stored %q, want %q", tt.features, out.SupportedFeatures, e.stored("inv1").SupportedFeatures, tt.negotiate)
		}
		if got := len(e.notifier.Sent()); got != map[bool]int{false: 0, true: 1}[tt.notify] {
			t.Errorf("supportedFeatures %q request %v: %d notifications sent", tt.features, tt.request, got)
			continue
		}
		if tt.notify {
			s := e.notifier.Sent()[0]
			want := capif.TestNotification{Subscription: "https://ccf.example.com/capif-security/v1/trustedInvokers/inv1"}
			if s.Destination != destInv1 || !reflect.DeepEqual(s.Body, want) {
				t.Errorf("test notification %+v to %s, want %+v to %s", s.Body, s.Destination, want, destInv1)
			}
		}
	}
}

func TestTestNotificationFailureIsLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.notifier.Err = errors.New("connection refused")
	req := standardRequest()
	req.SupportedFeatures = "1"
	req.RequestTestNotification = new(true)
	if _, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req); err != nil {
		t.Fatalf("a failed test notification failed the request: %v", err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "test notification not delivered") || !strings.Contains(logs, "connection refused") {
		t.Errorf("failure not logged: %s", logs)
	}
	if strings.Contains(logs, "k=secret") || strings.Contains(logs, "/notify") {
		t.Errorf("the log shows the destination's path or query: %s", logs)
	}
	// The test notification also follows an update.
	e.notifier.Err = nil
	if _, err := e.svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req); err != nil {
		t.Fatal(err)
	}
	if len(e.notifier.Sent()) != 2 {
		t.Errorf("%d test notifications after create and update, want 2", len(e.notifier.Sent()))
	}
}

func TestResourceURIEscapes(t *testing.T) {
	t.Parallel()
	if got, want := security.ResourceURI("https://ccf", "a/b c"), "https://ccf/capif-security/v1/trustedInvokers/a%2Fb%20c"; got != want {
		t.Errorf("ResourceURI = %q, want %q", got, want)
	}
}

func TestCreateExistingIsForbidden(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	before := e.stored("inv1")
	_, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK)))
	got := wantError(t, err, security.KindForbidden, security.CauseContextExists)
	if !strings.Contains(got.Detail, "/update") {
		t.Errorf("detail %q does not point to …/update", got.Detail)
	}
	if after := e.stored("inv1"); !reflect.DeepEqual(before, after) {
		t.Errorf("the context changed:\n%s\n%s", dump(before), dump(after))
	}
}

// A PUT racing another PUT: the loser's Create meets ErrExists and answers 403 too.
func TestCreateRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	racer := &createRacer{Store: e.db, e: e}
	svc := security.New(racer, e.db, e.signer, e.notifier, e.clock, e.cfg)
	_, err := svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", request(entry("aef2", capif.PSK)))
	wantError(t, err, security.KindForbidden, security.CauseContextExists)
	if sc := e.stored("inv1"); len(sc.Entries) != 3 {
		t.Errorf("the winner's context was changed: %s", dump(sc))
	}
}

type createRacer struct {
	security.Store
	e *env
}

func (c *createRacer) Create(cx context.Context, sc *security.SecurityContext) error {
	c.e.create("inv1", standardRequest()) // the other PUT wins between our read and our write
	return c.Store.Create(cx, sc)
}

// checkingNotifier refuses some destinations up front, like notify.Notifier does for IP
// literals in forbidden ranges.
type checkingNotifier struct {
	securitytest.Notifier
	refuse string
}

func (n *checkingNotifier) CheckDestination(dest string) error {
	if dest == n.refuse {
		return errors.New("destination 169.254.169.254 is a link-local address; refused")
	}
	return nil
}

func TestDestinationCheckedAtCreateAndUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const bad = "http://169.254.169.254/latest"
	n := &checkingNotifier{refuse: bad}
	svc := security.New(e.hooks, e.db, e.signer, n, e.clock, e.cfg)
	req := standardRequest()
	req.NotificationDestination = bad
	_, err := svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req)
	assertInvalid(t, err, "/notificationDestination")
	if e.stored("inv1") != nil {
		t.Fatal("a context was stored with a refused destination")
	}
	if _, err := svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", standardRequest()); err != nil {
		t.Fatal(err)
	}
	_, err = svc.UpdateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", req)
	assertInvalid(t, err, "/notificationDestination")
	if got := e.stored("inv1").NotificationDestination; got != destInv1 {
		t.Fatalf("destination changed to %q by a refused update", got)
	}
}

func assertInvalid(t *testing.T, err error, pointer string) {
	t.Helper()
	var se *security.Error
	if !errors.As(err, &se) || se.Kind != security.KindInvalid || len(se.InvalidParams) != 1 || se.InvalidParams[0].Param != pointer {
		t.Fatalf("error %#v, want one invalid param at %s", err, pointer)
	}
}
