package storetest

import (
	"cmp"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// The fixture: records of a test with ids of its own, and the helpers that check them.

// runToken keeps ids of different runs apart in a shared table.
var runToken = func() string {
	var b [4]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}()

var idSeq atomic.Int64

// newID returns an id unique to this run; zero-padded so string order is creation order. It
// is also a valid FQDN label and free of the scope separators.
func newID(kind string) string {
	return fmt.Sprintf("%s-%s-%06d", kind, runToken, idSeq.Add(1))
}

// fixture is a registry of one invoker, two AEFs and two APIs:
//
//	api1 at aef1 on interface "one"    (profile methods PSK, OAUTH)
//	api1 at aef2 on interface "shared" (interface method PKI)
//	api2 at aef1 on interface "shared" (profile method OAUTH)
type fixture struct {
	inv, aef1, aef2, api1, api2 string
	host                        string
	one, shared, sharedPKI      capif.InterfaceDescription
	doc                         security.RegistryDoc
}

func newFixture() *fixture {
	port := 443
	f := &fixture{inv: newID("inv"), aef1: newID("aef"), aef2: newID("aef"), api1: newID("api"), api2: newID("api"), host: newID("h") + ".example.com"}
	f.one = capif.InterfaceDescription{Fqdn: f.host, Port: &port, APIPrefix: "/one"}
	f.shared = capif.InterfaceDescription{Fqdn: f.host, Port: &port, APIPrefix: "/shared"}
	f.sharedPKI = f.shared
	f.sharedPKI.SecurityMethods = []capif.SecurityMethod{capif.PKI}
	f.doc = security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: f.inv, NotificationDestination: "https://inv.example.com/cb",
			APIInvokerInformation: "contract test invoker", OnboardingSecret: "secret-" + f.inv}},
		AEFs: []security.AEFRecord{{AefID: f.aef1}, {AefID: f.aef2}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIName: "name1", APIID: f.api1, AefProfiles: []capif.AefProfile{
				{AefID: f.aef1, SecurityMethods: []capif.SecurityMethod{capif.PSK, capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{f.one}},
				{AefID: f.aef2, InterfaceDescriptions: []capif.InterfaceDescription{f.sharedPKI}},
			}},
			{APIName: "name2", APIID: f.api2, AefProfiles: []capif.AefProfile{
				{AefID: f.aef1, SecurityMethods: []capif.SecurityMethod{capif.OAUTH}, InterfaceDescriptions: []capif.InterfaceDescription{f.shared}},
			}},
		},
	}
	return f
}

func (f *fixture) keyOne() string    { return security.InterfaceKey(f.one) }
func (f *fixture) keyShared() string { return security.InterfaceKey(f.shared) }

func (f *fixture) invokerPrincipal() *security.Principal {
	return &security.Principal{ID: f.inv, Role: security.RoleInvoker, SecretHash: security.HashSecret("secret-" + f.inv),
		NotificationDestination: "https://inv.example.com/cb", APIInvokerInformation: "contract test invoker"}
}

func (f *fixture) api1AtAEF1() security.PublishedAPI {
	return security.PublishedAPI{AefID: f.aef1, APIID: f.api1, APIName: "name1",
		SecurityMethods: []capif.SecurityMethod{capif.PSK, capif.OAUTH}, Interfaces: []capif.InterfaceDescription{f.one}}
}

func (f *fixture) api1AtAEF2() security.PublishedAPI {
	return security.PublishedAPI{AefID: f.aef2, APIID: f.api1, APIName: "name1", Interfaces: []capif.InterfaceDescription{f.sharedPKI}}
}

func (f *fixture) api2AtAEF1() security.PublishedAPI {
	return security.PublishedAPI{AefID: f.aef1, APIID: f.api2, APIName: "name2",
		SecurityMethods: []capif.SecurityMethod{capif.OAUTH}, Interfaces: []capif.InterfaceDescription{f.shared}}
}

// api2AtShared is api2's index entry: narrowed to the one interface (it has only that one).
func (f *fixture) api2AtShared() security.PublishedAPI { return f.api2AtAEF1() }

// catalogue1 is ordered by apiId, as the domain keeps it.
func (f *fixture) catalogue1() *security.AEF {
	return &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{f.api1AtAEF1(), f.api2AtAEF1()}}
}

func (f *fixture) catalogue2() *security.AEF {
	return &security.AEF{AefID: f.aef2, APIs: []security.PublishedAPI{f.api1AtAEF2()}}
}

func (f *fixture) indexOne() []security.PublishedAPI { return []security.PublishedAPI{f.api1AtAEF1()} }

func (f *fixture) indexShared() []security.PublishedAPI {
	return sortedAPIs([]security.PublishedAPI{f.api1AtAEF2(), f.api2AtShared()})
}

// context is a security context with one entry of each kind, every field set.
func (f *fixture) context() *security.SecurityContext {
	shared := f.shared
	return &security.SecurityContext{
		APIInvokerID:            f.inv,
		NotificationDestination: "https://inv.example.com/cb",
		SupportedFeatures:       "2",
		Entries: []security.Entry{
			{AefID: f.aef1, APIID: f.api1, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI, capif.PSK}, SelSecurityMethod: capif.PSK,
				AuthorizationFlow: []string{capif.ClientCredentialsFlow}, PSK: "psk-" + f.inv, Targets: []security.Target{{AefID: f.aef1, APIID: f.api1, APIName: "name1"}}},
			{InterfaceDetails: &shared, PrefSecurityMethods: []capif.SecurityMethod{capif.OAUTH, capif.PKI}, SelSecurityMethod: capif.OAUTH,
				GrantType: []string{capif.GrantClientCredentials}, Targets: []security.Target{
					{AefID: f.aef2, APIID: f.api1, APIName: "name1"}, {AefID: f.aef1, APIID: f.api2, APIName: "name2"}}},
		},
	}
}

func (f *fixture) owed(aefID, apiID string) security.Owed {
	return security.Owed{ID: newID("owed"), APIInvokerID: f.inv, Destination: "https://inv.example.com/cb",
		Notification: capif.SecurityNotification{APIInvokerID: f.inv, AefID: aefID, APIIDs: []string{apiID}, Cause: capif.UnexpectedReason}}
}

// --- helpers ----------------------------------------------------------------------------------

func mustImport(t *testing.T, b Backend, doc security.RegistryDoc) {
	t.Helper()
	if err := doc.Validate(); err != nil {
		t.Fatalf("storetest fixture: %v", err)
	}
	if err := b.admin().ImportRegistry(t.Context(), doc); err != nil {
		t.Fatalf("Import: %v", err)
	}
}

func mustCreate(t *testing.T, b Backend, sc *security.SecurityContext) {
	t.Helper()
	if err := b.Store.Create(t.Context(), sc); err != nil {
		t.Fatalf("Create(%s): %v", sc.APIInvokerID, err)
	}
}

func loadContext(t *testing.T, b Backend, id string) *security.SecurityContext {
	t.Helper()
	snap, err := b.Store.Load(t.Context(), security.Query{APIInvokerID: id})
	if err != nil {
		t.Fatalf("Load(%s): %v", id, err)
	}
	return snap.Context
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, dump(got), dump(want))
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func clone[T any](t *testing.T, v T) T {
	t.Helper()
	var out T
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sorted(l []string) []string {
	l = slices.Clone(l)
	slices.Sort(l)
	if l == nil {
		l = []string{}
	}
	return l
}

func sortedAPIs(l []security.PublishedAPI) []security.PublishedAPI {
	l = slices.Clone(l)
	slices.SortFunc(l, func(a, b security.PublishedAPI) int {
		if c := cmp.Compare(a.AefID, b.AefID); c != 0 {
			return c
		}
		return cmp.Compare(a.APIID, b.APIID)
	})
	return l
}

func sortedTargets(l []security.Target) []security.Target {
	l = slices.Clone(l)
	slices.SortFunc(l, func(a, b security.Target) int {
		if c := cmp.Compare(a.AefID, b.AefID); c != 0 {
			return c
		}
		return cmp.Compare(a.APIID, b.APIID)
	})
	return l
}
