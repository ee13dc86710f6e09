package security_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

func TestRegistryDocValidate(t *testing.T) {
	t.Parallel()
	profile := func(aef string) []capif.AefProfile { return []capif.AefProfile{{AefID: aef}} }
	tests := []struct {
		name    string
		mutate  func(d *security.RegistryDoc)
		mention string // "" for a valid document
	}{
		{"valid", func(d *security.RegistryDoc) {}, ""},
		{"empty document", func(d *security.RegistryDoc) { *d = security.RegistryDoc{} }, ""},
		{"empty invoker id", func(d *security.RegistryDoc) { d.APIInvokers[0].APIInvokerID = "" }, "apiInvokers[0]"},
		{"over-long invoker id", func(d *security.RegistryDoc) { d.APIInvokers[1].APIInvokerID = strings.Repeat("i", 257) }, "apiInvokers[1]"},
		{"invoker id of 256 bytes", func(d *security.RegistryDoc) { d.APIInvokers[1].APIInvokerID = strings.Repeat("i", 256) }, ""},
		{"invoker id not UTF-8", func(d *security.RegistryDoc) { d.APIInvokers[1].APIInvokerID = "inv\xff" }, "apiInvokers[1]"},
		{"empty AEF id", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "" }, "aefs[2]"},
		{"invoker listed twice", func(d *security.RegistryDoc) { d.APIInvokers[1].APIInvokerID = "inv1" }, `"inv1" is listed twice`},
		{"AEF listed twice", func(d *security.RegistryDoc) { d.AEFs = append(d.AEFs, security.AEFRecord{AefID: "aef2"}) }, `"aef2" is listed twice`},
		{"one id in both roles", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "inv2" }, "both an API invoker and an AEF"},
		{"AEF id with ':'", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "aef:3" }, "aefs[2]"},
		{"AEF id with ';'", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "aef;3" }, "aefs[2]"},
		{"AEF id with ','", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "aef,3" }, "aefs[2]"},
		{"AEF id with '#'", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "aef#3" }, "aefs[2]"},
		{"AEF id with space", func(d *security.RegistryDoc) { d.AEFs[2].AefID = "aef 3" }, "aefs[2]"},
		{"invoker id with ':'", func(d *security.RegistryDoc) { d.APIInvokers[0].APIInvokerID = "inv:1" }, "apiInvokers[0]"},
		{"apiName with ','", func(d *security.RegistryDoc) { d.ServiceAPIs[0].APIName = "al,pha" }, "serviceApis[0]: apiName"},
		{"apiName with ';'", func(d *security.RegistryDoc) { d.ServiceAPIs[0].APIName = "al;pha" }, "serviceApis[0]: apiName"},
		{"apiName with ':'", func(d *security.RegistryDoc) { d.ServiceAPIs[1].APIName = "be:ta" }, "serviceApis[1]: apiName"},
		{"apiName empty", func(d *security.RegistryDoc) { d.ServiceAPIs[1].APIName = "" }, "serviceApis[1]: apiName"},
		{"apiId empty", func(d *security.RegistryDoc) { d.ServiceAPIs[2].APIID = "" }, "serviceApis[2]: apiId"},
		{"apiId too long", func(d *security.RegistryDoc) { d.ServiceAPIs[2].APIID = strings.Repeat("a", 257) }, "serviceApis[2]: apiId"},
		{"apiId twice", func(d *security.RegistryDoc) { d.ServiceAPIs[3].APIID = "apiA" }, `apiId "apiA" is listed twice`},
		{"no profiles", func(d *security.RegistryDoc) { d.ServiceAPIs[0].AefProfiles = nil }, "serviceApis[0]: aefProfiles is empty"},
		{"profile of an unlisted AEF", func(d *security.RegistryDoc) { d.ServiceAPIs[0].AefProfiles = profile("aef9") }, `aefProfiles[0]: aefId "aef9"`},
		{"profile of an invoker", func(d *security.RegistryDoc) { d.ServiceAPIs[3].AefProfiles[1].AefID = "inv1" }, `serviceApis[3].aefProfiles[1]: aefId "inv1"`},
		{"bad interface", func(d *security.RegistryDoc) {
			d.ServiceAPIs[0].AefProfiles[0].InterfaceDescriptions[1].Port = intp(70000)
		}, "serviceApis[0].aefProfiles[0].interfaceDescriptions[1]/port"},
		{"interface with two addresses", func(d *security.RegistryDoc) {
			d.ServiceAPIs[1].AefProfiles[0].InterfaceDescriptions[0].Ipv4Addr = "192.0.2.1"
		}, "serviceApis[1].aefProfiles[0].interfaceDescriptions[0]: exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := registryDoc()
			tt.mutate(&d)
			err := d.Validate()
			switch {
			case tt.mention == "" && err != nil:
				t.Errorf("valid document refused: %v", err)
			case tt.mention != "" && err == nil:
				t.Errorf("accepted, want an error mentioning %q", tt.mention)
			case tt.mention != "" && !strings.Contains(err.Error(), tt.mention):
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// Every problem is reported, not just the first.
func TestRegistryDocValidateReportsAll(t *testing.T) {
	t.Parallel()
	d := registryDoc()
	d.AEFs[0].AefID = "a:b"
	d.ServiceAPIs[2].APIName = ""
	err := d.Validate()
	if err == nil || !strings.Contains(err.Error(), "aefs[0]") || !strings.Contains(err.Error(), "serviceApis[2]") {
		t.Errorf("error %v", err)
	}
}

func openDB(t *testing.T) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// admin runs the registry operations on db alone.
func admin(db *embedded.DB) *security.Service {
	return security.New(db, db, nil, &securitytest.Notifier{}, nil, security.Config{})
}

func catalogue(t *testing.T, db *embedded.DB, aefs ...string) map[string][]string {
	t.Helper()
	snap, err := db.Load(ctx, security.Query{AefIDs: aefs})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for id, a := range snap.AEFs {
		for _, p := range a.APIs {
			out[id] = append(out[id], p.APIID+"="+p.APIName)
		}
	}
	return out
}

func iface(t *testing.T, db *embedded.DB, d capif.InterfaceDescription) []string {
	t.Helper()
	k := security.InterfaceKey(d)
	snap, err := db.Load(ctx, security.Query{InterfaceKeys: []string{k}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range snap.Interfaces[k] {
		out = append(out, p.AefID+"/"+p.APIID)
	}
	slices.Sort(out)
	return out
}

func principal(t *testing.T, db *embedded.DB, id string) *security.Principal {
	t.Helper()
	snap, err := db.Load(ctx, security.Query{CallerID: id})
	if err != nil {
		t.Fatal(err)
	}
	return snap.Caller
}

func TestImportUpserts(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	if err := admin(db).ImportRegistry(ctx, registryDoc()); err != nil {
		t.Fatal(err)
	}
	if got, want := catalogue(t, db, "aef1", "aef2", "aef3"), map[string][]string{
		"aef1": {"apiA=alpha", "apiB=beta", "apiD=delta"},
		"aef2": {"apiC=gamma", "apiD=delta"},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("catalogues %v, want %v", got, want)
	}
	if got := iface(t, db, ifShared); !slices.Equal(got, []string{"aef1/apiD", "aef2/apiD"}) {
		t.Errorf("shared interface %v", got)
	}
	inv1 := principal(t, db, "inv1")
	if inv1 == nil || inv1.Role != security.RoleInvoker || !reflect.DeepEqual(inv1.SecretHash, security.HashSecret(inv1Secret)) || inv1.NotificationDestination != destInv1 {
		t.Errorf("inv1 %+v", inv1)
	}
	if p := principal(t, db, "aef3"); p == nil || p.Role != security.RoleAEF {
		t.Errorf("aef3 %+v", p)
	}

	// Re-import: apiB renamed and moved to aef2 on another interface, apiD leaves aef1, inv1's
	// secret rotates, a new invoker appears. Nothing else is touched.
	newB := capif.InterfaceDescription{Fqdn: "b2.example.com"}
	doc := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv1", OnboardingSecret: "rotated"}, {APIInvokerID: "inv3"}},
		AEFs:        []security.AEFRecord{{AefID: "aef2"}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIID: "apiB", APIName: "beta2", AefProfiles: []capif.AefProfile{{AefID: "aef2", InterfaceDescriptions: []capif.InterfaceDescription{newB}}}},
			{APIID: "apiD", APIName: "delta", AefProfiles: []capif.AefProfile{{AefID: "aef2", InterfaceDescriptions: []capif.InterfaceDescription{ifShared}}}},
		},
	}
	if err := admin(db).ImportRegistry(ctx, doc); err != nil {
		t.Fatal(err)
	}
	if got, want := catalogue(t, db, "aef1", "aef2"), map[string][]string{
		"aef1": {"apiA=alpha"},
		"aef2": {"apiB=beta2", "apiC=gamma", "apiD=delta"},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("catalogues after re-import %v, want %v", got, want)
	}
	if got := iface(t, db, ifB); len(got) != 0 {
		t.Errorf("old interface of apiB still indexed: %v", got)
	}
	if got := iface(t, db, newB); !slices.Equal(got, []string{"aef2/apiB"}) {
		t.Errorf("new interface of apiB %v", got)
	}
	if got := iface(t, db, ifShared); !slices.Equal(got, []string{"aef2/apiD"}) {
		t.Errorf("shared interface after re-import %v", got)
	}
	if got := iface(t, db, ifA2); !slices.Equal(got, []string{"aef1/apiA"}) {
		t.Errorf("untouched interface %v", got)
	}
	if p := principal(t, db, "inv1"); !reflect.DeepEqual(p.SecretHash, security.HashSecret("rotated")) {
		t.Error("the onboarding secret did not rotate")
	}
	if principal(t, db, "inv3") == nil || principal(t, db, "inv2") == nil {
		t.Error("inv3 not added, or inv2 lost")
	}

	// A record that omits onboardingSecret keeps the one on record.
	if err := admin(db).ImportRegistry(ctx, security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv1", APIInvokerInformation: "renamed"}}}); err != nil {
		t.Fatal(err)
	}
	if p := principal(t, db, "inv1"); !reflect.DeepEqual(p.SecretHash, security.HashSecret("rotated")) || p.APIInvokerInformation != "renamed" {
		t.Errorf("inv1 after a secret-less re-import: %+v", p)
	}
}

func TestImportRoleClashWritesNothing(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	if err := admin(db).ImportRegistry(ctx, registryDoc()); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []security.RegistryDoc{
		{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv9"}, {APIInvokerID: "aef1"}}},
		{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv9"}}, AEFs: []security.AEFRecord{{AefID: "inv2"}}},
	} {
		err := admin(db).ImportRegistry(ctx, doc)
		if !errors.Is(err, security.ErrRoleClash) {
			t.Errorf("import %+v: %v, want ErrRoleClash", doc, err)
		}
		if principal(t, db, "inv9") != nil {
			t.Error("part of a refused import was written")
		}
	}
	if p := principal(t, db, "aef1"); p.Role != security.RoleAEF {
		t.Errorf("aef1 became %s", p.Role)
	}
}

func TestImportRegistryValidates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv9"}}, AEFs: []security.AEFRecord{{AefID: "bad;id"}}}
	if err := e.svc.ImportRegistry(ctx, doc); err == nil || !strings.Contains(err.Error(), "aefs[0]") {
		t.Errorf("ImportRegistry accepted an invalid document: %v", err)
	}
	if principal(t, e.db, "inv9") != nil {
		t.Error("an invalid document was partly imported")
	}
}

func TestAdminRemoveAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.create("inv2", &capif.ServiceSecurity{NotificationDestination: "https://inv2.example.com/", SecurityInfo: []capif.SecurityInformation{
		withAPI(entry("aef1", capif.OAUTH), "apiD"), entry("aef1", capif.OAUTH)}})

	n, err := e.svc.RemoveAPI(ctx, "apiD")
	if err != nil || n != 2 {
		t.Fatalf("RemoveAPI = %d, %v; want 2 contexts", n, err)
	}
	if got, want := entryTargets(e.stored("inv1")), []string{"aef1=aef1/apiA,aef1/apiB", "aef2=aef2/apiC"}; !slices.Equal(got, want) {
		t.Errorf("inv1 left %v, want %v", got, want)
	}
	if got, want := entryTargets(e.stored("inv2")), []string{"aef1=aef1/apiA,aef1/apiB"}; !slices.Equal(got, want) {
		t.Errorf("inv2 left %v, want %v", got, want)
	}
	// Delivered concurrently: compare in a fixed order.
	sent := e.notifier.Sent()
	slices.SortFunc(sent, func(a, b securitytest.Sent) int {
		x, y := a.Body.(capif.SecurityNotification), b.Body.(capif.SecurityNotification)
		return strings.Compare(x.APIInvokerID+x.AefID, y.APIInvokerID+y.AefID)
	})
	var got []capif.SecurityNotification
	for _, s := range sent {
		got = append(got, s.Body.(capif.SecurityNotification))
	}
	want := []capif.SecurityNotification{
		{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiD"}, Cause: capif.UnexpectedReason},
		{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiD"}, Cause: capif.UnexpectedReason},
		{APIInvokerID: "inv2", AefID: "aef1", APIIDs: []string{"apiD"}, Cause: capif.UnexpectedReason},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("notifications %s, want %s", dump(got), dump(want))
	}
	if sent[2].Destination != "https://inv2.example.com/" {
		t.Errorf("inv2 notified at %s", sent[2].Destination)
	}
	if got := catalogue(t, e.db, "aef1", "aef2"); slices.Contains(got["aef1"], "apiD=delta") || slices.Contains(got["aef2"], "apiD=delta") {
		t.Errorf("apiD still published: %v", got)
	}
	if got := iface(t, e.db, ifShared); len(got) != 0 {
		t.Errorf("apiD's interface still indexed: %v", got)
	}
	if p := e.pending(); len(p) != 0 {
		t.Errorf("outbox %s", dump(p))
	}
	// Gone now.
	if _, err := e.svc.RemoveAPI(ctx, "apiD"); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("second RemoveAPI: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.RemoveAPI(ctx, "apiZ"); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("RemoveAPI of an unknown API: %v, want ErrNotFound", err)
	}
}

func TestAdminRemoveAPIDeletesEmptiedContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", request(withAPI(entry("aef2", capif.PSK), "apiC")))
	e.notifier.Err = errors.New("unreachable")
	n, err := e.svc.RemoveAPI(ctx, "apiC")
	if err != nil || n != 1 {
		t.Fatalf("RemoveAPI = %d, %v", n, err)
	}
	if sc := e.stored("inv1"); sc != nil {
		t.Errorf("an emptied context is kept: %s", dump(sc))
	}
	if p := e.pending(); len(p) != 1 || p[0].Notification.AefID != "aef2" {
		t.Errorf("the undelivered notification is not in the outbox: %s", dump(p))
	}
}

func TestAdminRemoveInvoker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	if err := e.svc.RemoveInvoker(ctx, "inv1"); err != nil {
		t.Fatal(err)
	}
	if e.stored("inv1") != nil || principal(t, e.db, "inv1") != nil {
		t.Error("the invoker or its context survived")
	}
	// Owed one notification per AEF of the removed context, cause UNEXPECTED_REASON.
	sent := e.notifier.Sent()
	slices.SortFunc(sent, func(a, b securitytest.Sent) int {
		return strings.Compare(a.Body.(capif.SecurityNotification).AefID, b.Body.(capif.SecurityNotification).AefID)
	})
	var got []capif.SecurityNotification
	for _, s := range sent {
		got = append(got, s.Body.(capif.SecurityNotification))
		if s.Destination != destInv1 {
			t.Errorf("notified at %s", s.Destination)
		}
	}
	want := []capif.SecurityNotification{
		{APIInvokerID: "inv1", AefID: "aef1", APIIDs: []string{"apiA", "apiB", "apiD"}, Cause: capif.UnexpectedReason},
		{APIInvokerID: "inv1", AefID: "aef2", APIIDs: []string{"apiC", "apiD"}, Cause: capif.UnexpectedReason},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("offboarding notified %s, want %s", dump(got), dump(want))
	}
	if p := e.pending(); len(p) != 0 {
		t.Errorf("delivered notifications left in the outbox: %s", dump(p))
	}
	// Without a context, and again.
	if err := e.svc.RemoveInvoker(ctx, "inv2"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"inv1", "nobody", "aef1"} {
		if err := e.svc.RemoveInvoker(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveInvoker(%s): %v, want ErrNotFound", id, err)
		}
	}
	if principal(t, e.db, "aef1") == nil {
		t.Error("RemoveInvoker removed an AEF")
	}
}

func TestAdminRemoveAEF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.svc.RemoveAEF(ctx, "aef1"); !errors.Is(err, security.ErrExists) || !strings.Contains(err.Error(), "apiA") {
		t.Errorf("RemoveAEF of a publishing AEF: %v, want ErrExists naming its APIs", err)
	}
	if principal(t, e.db, "aef1") == nil {
		t.Error("a publishing AEF was removed")
	}
	if err := e.svc.RemoveAEF(ctx, "aef3"); err != nil {
		t.Fatal(err)
	}
	if principal(t, e.db, "aef3") != nil {
		t.Error("aef3 survived")
	}
	for _, id := range []string{"aef3", "nobody", "inv1"} {
		if err := e.svc.RemoveAEF(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveAEF(%s): %v, want ErrNotFound", id, err)
		}
	}
	// Once its APIs are withdrawn, aef2 can go.
	for _, api := range []string{"apiC", "apiD"} {
		if _, err := e.svc.RemoveAPI(ctx, api); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.RemoveAEF(ctx, "aef2"); err != nil {
		t.Errorf("RemoveAEF after its APIs were removed: %v", err)
	}
}

// onboardingSecretSha256 carries an invoker's client authentication without the secret: the
// secret that hashes to it authenticates; a malformed hash, or one beside a secret, is refused.
func TestOnboardingSecretSHA256(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sum := sha256.Sum256([]byte("moved-secret"))
	doc := security.RegistryDoc{APIInvokers: []security.InvokerRecord{{APIInvokerID: "inv-moved", OnboardingSecretSHA256: hex.EncodeToString(sum[:])}}}
	if err := e.svc.ImportRegistry(ctx, doc); err != nil {
		t.Fatal(err)
	}
	exported, err := e.svc.ExportRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range exported.APIInvokers {
		if inv.APIInvokerID == "inv-moved" && inv.OnboardingSecretSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("exported %+v", inv)
		}
	}
	e.create("inv-moved", request(entry("aef1", capif.OAUTH)))
	if _, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv-moved"}, "inv-moved", tokenReq("inv-moved", "moved-secret", "")); err != nil {
		t.Errorf("the secret of the hash: %v", err)
	}
	if _, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv-moved"}, "inv-moved", tokenReq("inv-moved", "other", "")); err == nil {
		t.Error("another secret authenticated")
	}
	for name, inv := range map[string]security.InvokerRecord{
		"short":      {APIInvokerID: "x", OnboardingSecretSHA256: "abcd"},
		"uppercase":  {APIInvokerID: "x", OnboardingSecretSHA256: strings.ToUpper(hex.EncodeToString(sum[:]))},
		"and secret": {APIInvokerID: "x", OnboardingSecretSHA256: hex.EncodeToString(sum[:]), OnboardingSecret: "s"},
	} {
		if err := (security.RegistryDoc{APIInvokers: []security.InvokerRecord{inv}}).Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
