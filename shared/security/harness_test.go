package security_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// The registry of the domain tests.
//
//	aef1 publishes apiA "alpha" (profile PKI,OAUTH; ifA1 OAUTH only; ifA2 profile level),
//	     apiB "beta" (no methods anywhere: all three) and apiD "delta" on ifShared.
//	aef2 publishes apiC "gamma" (profile PSK, domainName only) and apiD "delta" on ifShared.
//	aef3 publishes nothing.
//
// So an aefId-only entry for aef1 can only get OAUTH (the intersection), one for aef2 only PSK.
var (
	ifA1     = capif.InterfaceDescription{Fqdn: "a.example.com", Port: intp(443), SecurityMethods: []capif.SecurityMethod{capif.OAUTH}}
	ifA2     = capif.InterfaceDescription{Ipv4Addr: "10.0.0.1", Port: intp(8080)}
	ifB      = capif.InterfaceDescription{Fqdn: "b.example.com", Port: intp(443), APIPrefix: "/beta"}
	ifShared = capif.InterfaceDescription{Ipv6Addr: "2001:db8::1", Port: intp(443)}
)

const (
	inv1Secret = "s3cret-of-inv1"
	destInv1   = "https://inv1.example.com/notify/x?k=secret"
	clientCA   = "-----BEGIN CERTIFICATE-----\nTEST CA\n-----END CERTIFICATE-----\n"
	issuer     = "ccf-test"
)

func registryDoc() security.RegistryDoc {
	return security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{
			{APIInvokerID: "inv1", OnboardingSecret: inv1Secret, NotificationDestination: destInv1},
			{APIInvokerID: "inv2"},
		},
		AEFs: []security.AEFRecord{{AefID: "aef1"}, {AefID: "aef2"}, {AefID: "aef3"}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIID: "apiA", APIName: "alpha", AefProfiles: []capif.AefProfile{{AefID: "aef1", SecurityMethods: []capif.SecurityMethod{capif.PKI, capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{ifA1, ifA2}}}},
			{APIID: "apiB", APIName: "beta", AefProfiles: []capif.AefProfile{{AefID: "aef1", InterfaceDescriptions: []capif.InterfaceDescription{ifB}}}},
			{APIID: "apiC", APIName: "gamma", AefProfiles: []capif.AefProfile{{AefID: "aef2", SecurityMethods: []capif.SecurityMethod{capif.PSK}, DomainName: "c.example.com"}}},
			{APIID: "apiD", APIName: "delta", AefProfiles: []capif.AefProfile{
				{AefID: "aef1", InterfaceDescriptions: []capif.InterfaceDescription{ifShared}},
				{AefID: "aef2", InterfaceDescriptions: []capif.InterfaceDescription{ifShared}},
			}},
		},
	}
}

// --- environment --------------------------------------------------------------------------------

type env struct {
	t        *testing.T
	db       *embedded.DB
	hooks    *securitytest.Store
	svc      *security.Service
	signer   *securitytest.Signer
	notifier *securitytest.Notifier
	clock    *securitytest.Clock
	logs     *bytes.Buffer
	cfg      security.Config
}

func newEnv(t *testing.T, configure ...func(*security.Config)) *env {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e := &env{t: t, db: db, hooks: &securitytest.Store{Store: db}, signer: &securitytest.Signer{}, notifier: &securitytest.Notifier{},
		clock: securitytest.NewClock(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)), logs: &bytes.Buffer{}}
	e.cfg = security.Config{Issuer: issuer, TokenTTL: 300 * time.Second, APIRoot: "https://ccf.example.com", ClientCA: func(context.Context) (string, error) { return clientCA, nil },
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil))}
	for _, f := range configure {
		f(&e.cfg)
	}
	e.svc = security.New(e.hooks, db, e.signer, e.notifier, e.clock, e.cfg)
	if err := e.svc.ImportRegistry(context.Background(), registryDoc()); err != nil {
		t.Fatal(err)
	}
	return e
}

var ctx = context.Background()

// stored reads the security context of id straight from the database (nil: none).
func (e *env) stored(id string) *security.SecurityContext {
	e.t.Helper()
	snap, err := e.db.Load(ctx, security.Query{APIInvokerID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return snap.Context
}

func (e *env) pending() []security.Owed {
	e.t.Helper()
	p, err := e.db.Pending(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func entry(aef string, pref ...capif.SecurityMethod) capif.SecurityInformation {
	return capif.SecurityInformation{AefID: aef, PrefSecurityMethods: pref}
}

func ifEntry(d capif.InterfaceDescription, pref ...capif.SecurityMethod) capif.SecurityInformation {
	d.SecurityMethods = nil // the invoker's copy carries no methods of its own
	return capif.SecurityInformation{InterfaceDetails: &d, PrefSecurityMethods: pref}
}

func request(entries ...capif.SecurityInformation) *capif.ServiceSecurity {
	return &capif.ServiceSecurity{NotificationDestination: destInv1, SecurityInfo: entries}
}

// standardContext is inv1's context of most tests:
//
//	0: aefId aef1 → OAUTH, targets aef1/apiA, aef1/apiB, aef1/apiD
//	1: aefId aef2 → PSK,   targets aef2/apiC, aef2/apiD
//	2: ifShared   → PKI,   targets aef1/apiD, aef2/apiD
func standardRequest() *capif.ServiceSecurity {
	return request(
		entry("aef1", capif.PSK, capif.OAUTH),
		entry("aef2", capif.PSK),
		ifEntry(ifShared, capif.PKI),
	)
}

func (e *env) create(id string, req *capif.ServiceSecurity) *capif.ServiceSecurity {
	e.t.Helper()
	out, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: id}, id, req)
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return out
}

// wantError checks that err is a *security.Error of kind, with the given cause or OAuth code
// (whichever is not empty) and the given invalid param pointers.
func wantError(t *testing.T, err error, kind security.Kind, code string, pointers ...string) *security.Error {
	t.Helper()
	var e *security.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a *security.Error of kind %d", err, err, kind)
	}
	if e.Kind != kind {
		t.Errorf("kind %d, want %d (%v)", e.Kind, kind, e)
	}
	if code != "" && e.Cause != code && e.OAuthError != code {
		t.Errorf("cause %q / oauth %q, want %q (%v)", e.Cause, e.OAuthError, code, e)
	}
	var got []string
	for _, p := range e.InvalidParams {
		got = append(got, p.Param)
	}
	if len(pointers) > 0 || len(got) > 0 {
		if fmt.Sprint(got) != fmt.Sprint(pointers) {
			t.Errorf("invalid params %v, want %v", got, pointers)
		}
	}
	return e
}

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// causeMalformed stands for the edge's own cause of a request it could not decode.
const causeMalformed = "MALFORMED_BODY"

// decodeErr stands for the edge's decoding error of a request.
func decodeErr(what string) error {
	return &security.Error{Kind: security.KindInvalid, Cause: causeMalformed, Detail: what}
}

// refused is what the edge answers for a request it could not decode (httpapi's refuse): the
// caller's identity rule first, then the decoding error.
func refused(svc *security.Service, op security.Operation, caller, id string, err error) error {
	if aerr := svc.Authorize(ctx, op, security.Caller{ID: caller}, id); aerr != nil {
		return aerr
	}
	return err
}
