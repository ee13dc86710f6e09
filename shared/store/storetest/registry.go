package storetest

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// --- Registry ---------------------------------------------------------------------------------

// records writes one record of each kind straight through tx (not through the registry rules).
func (f *fixture) records(tx security.RegistryTx) error {
	p := f.api1AtAEF1()
	for _, err := range []error{
		tx.PutPrincipal(f.invokerPrincipal()),
		tx.PutAEF(&security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{p}}),
		tx.PutAPI(&f.doc.ServiceAPIs[0]),
		tx.PutInterface(f.keyOne(), []security.PublishedAPI{p}),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// everything is the query that loads what records wrote.
func (f *fixture) everything() security.Query {
	return security.Query{CallerID: f.inv, AefIDs: []string{f.aef1}, InterfaceKeys: []string{f.keyOne()}}
}

func testUpdateAtomic(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	failed := errors.New("the rule refused")
	err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := f.records(tx); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	snap, err := b.Store.Load(ctx, f.everything())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Caller != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
		t.Errorf("a failed Update wrote %s", dump(snap))
	}

	if err := b.Registry.Update(ctx, f.records); err != nil {
		t.Fatal(err)
	}
	snap, err = b.Store.Load(ctx, f.everything())
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, f.invokerPrincipal())
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{f.api1AtAEF1()}})
	equal(t, "Interfaces[one]", snap.Interfaces[f.keyOne()], []security.PublishedAPI{f.api1AtAEF1()})
}

func testUpdateOwnWrites(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	if err := b.Registry.Update(ctx, f.records); err != nil {
		t.Fatal(err)
	}
	keys := []security.RecordKey{{Kind: security.RecordPrincipal, ID: f.inv}, {Kind: security.RecordPrincipal, ID: f.aef2},
		{Kind: security.RecordAEF, ID: f.aef1}, {Kind: security.RecordAPI, ID: f.api1}, {Kind: security.RecordInterface, ID: f.keyOne()},
		{Kind: security.RecordInterface, ID: f.keyShared()}}
	err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.Prefetch(keys); err != nil {
			return err
		}
		// As stored: present ones found, absent ones ErrNotFound.
		if p, err := tx.GetPrincipal(f.inv); err != nil || !reflect.DeepEqual(p, f.invokerPrincipal()) {
			t.Errorf("GetPrincipal = %s, %v", dump(p), err)
		}
		if d, err := tx.GetAPI(f.api1); err != nil || d.APIID != f.api1 {
			t.Errorf("GetAPI = %s, %v", dump(d), err)
		}
		if _, err := tx.GetPrincipal(f.aef2); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetPrincipal of an absent id = %v, want ErrNotFound", err)
		}
		if _, err := tx.GetAEF(f.aef2); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetAEF of an absent catalogue = %v, want ErrNotFound", err)
		}
		if _, err := tx.GetAPI(f.api2); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetAPI of an absent API = %v, want ErrNotFound", err)
		}
		if _, err := tx.GetInterface(f.keyShared()); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("GetInterface of an absent entry = %v, want ErrNotFound", err)
		}
		// Own writes, deletions included (an empty catalogue or index entry is a deletion).
		aef2 := &security.Principal{ID: f.aef2, Role: security.RoleAEF}
		for _, err := range []error{tx.PutPrincipal(aef2), tx.DeletePrincipal(f.inv), tx.PutAEF(&security.AEF{AefID: f.aef1}),
			tx.PutInterface(f.keyOne(), nil), tx.DeleteAPI(f.api1)} {
			if err != nil {
				return err
			}
		}
		if p, err := tx.GetPrincipal(f.aef2); err != nil || !reflect.DeepEqual(p, aef2) {
			t.Errorf("GetPrincipal after PutPrincipal = %s, %v", dump(p), err)
		}
		for what, err := range map[string]error{
			"GetPrincipal after DeletePrincipal": second(tx.GetPrincipal(f.inv)),
			"GetAEF after an empty PutAEF":       second(tx.GetAEF(f.aef1)),
			"GetInterface after an empty Put":    second(tx.GetInterface(f.keyOne())),
			"GetAPI after DeleteAPI":             second(tx.GetAPI(f.api1)),
		} {
			if !errors.Is(err, security.ErrNotFound) {
				t.Errorf("%s = %v, want ErrNotFound", what, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, AefIDs: []string{f.aef1}, InterfaceKeys: []string{f.keyOne()}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Caller != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
		t.Errorf("deleted records still load: %s", dump(snap))
	}
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef2})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller aef2", snap.Caller, &security.Principal{ID: f.aef2, Role: security.RoleAEF})
}

func second[T any](_ T, err error) error { return err }

func testUpdateDeleteContext(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustCreate(t, b, f.context())
	other := newFixture()
	mustCreate(t, b, other.context())
	absent := newID("inv")
	err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.DeleteContext(absent, nil); err != nil { // nothing to delete is no error
			return err
		}
		return tx.DeleteContext(f.inv, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if sc := loadContext(t, b, f.inv); sc != nil {
		t.Errorf("the context survived DeleteContext: %s", dump(sc))
	}
	if sc := loadContext(t, b, other.inv); sc == nil {
		t.Error("DeleteContext deleted another invoker's context")
	}
	// A failed change deletes nothing.
	failed := errors.New("the rule refused")
	err = b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.DeleteContext(other.inv, nil); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if sc := loadContext(t, b, other.inv); sc == nil {
		t.Error("a failed Update deleted a context")
	}
}

func testImport(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	// Importing the same document again changes nothing.
	mustImport(t, b, f.doc)
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, AefIDs: []string{f.aef1, f.aef2}, InterfaceKeys: []string{f.keyOne(), f.keyShared()}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, f.invokerPrincipal())
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], f.catalogue1())
	equal(t, "AEFs[aef2]", snap.AEFs[f.aef2], f.catalogue2())
	equal(t, "Interfaces[one]", sortedAPIs(snap.Interfaces[f.keyOne()]), f.indexOne())
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), f.indexShared())
}

// testRecords: Records lists every principal and service API as imported, ordered by id, and
// none of the derived records (catalogues, interface index).
func testRecords(t *testing.T, b Backend) {
	f := newFixture()
	mustImport(t, b, f.doc)
	recs, err := b.Registry.Records(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var principals []security.Principal
	for _, p := range recs.Principals {
		if p.ID == f.inv || p.ID == f.aef1 || p.ID == f.aef2 {
			principals = append(principals, p)
		}
	}
	var apis []capif.ServiceAPIDescription
	for _, d := range recs.APIs {
		if d.APIID == f.api1 || d.APIID == f.api2 {
			apis = append(apis, d)
		}
	}
	for i := 1; i < len(recs.Principals); i++ {
		if recs.Principals[i-1].ID >= recs.Principals[i].ID {
			t.Fatalf("principals not ordered by id: %q before %q", recs.Principals[i-1].ID, recs.Principals[i].ID)
		}
	}
	aef := func(id string) security.Principal { return security.Principal{ID: id, Role: security.RoleAEF} }
	want := []security.Principal{aef(f.aef1), aef(f.aef2), *f.invokerPrincipal()} // ids sort "aef…" before "inv…"
	equal(t, "principals", principals, want)
	equal(t, "APIs", apis, f.doc.ServiceAPIs)
}

// testReimport: importing an API again replaces its profiles everywhere: catalogues of AEFs it
// left lose it, interfaces it left lose it (and vanish when nothing else is served there), other
// APIs on the same interface stay. Records not in the new document are kept (upsert).
func testReimport(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)

	port := 8443
	moved := capif.InterfaceDescription{Fqdn: f.host, Port: &port, APIPrefix: "/moved"}
	api1 := capif.ServiceAPIDescription{APIName: "renamed1", APIID: f.api1, AefProfiles: []capif.AefProfile{
		{AefID: f.aef1, SecurityMethods: []capif.SecurityMethod{capif.PKI}, InterfaceDescriptions: []capif.InterfaceDescription{moved}},
	}}
	doc := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: f.inv, NotificationDestination: "https://inv.example.com/new", OnboardingSecret: "rotated"}},
		AEFs:        []security.AEFRecord{{AefID: f.aef1}},
		ServiceAPIs: []capif.ServiceAPIDescription{api1},
	}
	mustImport(t, b, doc)

	keyMoved := security.InterfaceKey(moved)
	snap, err := b.Store.Load(ctx, security.Query{
		CallerID: f.inv, AefIDs: []string{f.aef1, f.aef2},
		InterfaceKeys: []string{f.keyOne(), f.keyShared(), keyMoved},
	})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller", snap.Caller, &security.Principal{ID: f.inv, Role: security.RoleInvoker,
		SecretHash: security.HashSecret("rotated"), NotificationDestination: "https://inv.example.com/new"})
	newAPI1 := security.PublishedAPI{AefID: f.aef1, APIID: f.api1, APIName: "renamed1",
		SecurityMethods: []capif.SecurityMethod{capif.PKI}, Interfaces: []capif.InterfaceDescription{moved}}
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{newAPI1, f.api2AtAEF1()}})
	if a := snap.AEFs[f.aef2]; a != nil && len(a.APIs) > 0 {
		t.Errorf("AEF %s no longer in api1's profiles still lists %s", f.aef2, dump(a.APIs))
	}
	if l, ok := snap.Interfaces[f.keyOne()]; ok {
		t.Errorf("interface only api1 used is still indexed: %s", dump(l))
	}
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), []security.PublishedAPI{f.api2AtShared()})
	equal(t, "Interfaces[moved]", sortedAPIs(snap.Interfaces[keyMoved]), []security.PublishedAPI{newAPI1})

	// aef2 is no longer in any document but stays registered: import never deletes.
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef2})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller aef2", snap.Caller, &security.Principal{ID: f.aef2, Role: security.RoleAEF})
}

func testRoleClash(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)

	// An existing invoker id listed as an AEF, after records that would otherwise be written
	// (invokers are applied first) and with an API published by it.
	newInv := newID("inv")
	port := 443
	ifc := capif.InterfaceDescription{Fqdn: newID("h") + ".example.com", Port: &port}
	clashAPI := newID("api")
	asAEF := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: newInv}},
		AEFs:        []security.AEFRecord{{AefID: f.inv}, {AefID: f.aef1}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIName: "clash", APIID: clashAPI, AefProfiles: []capif.AefProfile{{AefID: f.inv, InterfaceDescriptions: []capif.InterfaceDescription{ifc}}}},
		},
	}
	// The reverse: an existing AEF id listed as an invoker.
	asInvoker := security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: newInv}, {APIInvokerID: f.aef2}},
	}
	for name, doc := range map[string]security.RegistryDoc{"invoker as AEF": asAEF, "AEF as invoker": asInvoker} {
		if err := b.admin().ImportRegistry(ctx, doc); !errors.Is(err, security.ErrRoleClash) {
			t.Fatalf("%s: Import = %v, want ErrRoleClash", name, err)
		}
		snap, err := b.Store.Load(ctx, security.Query{CallerID: newInv, AefIDs: []string{f.inv}, InterfaceKeys: []string{security.InterfaceKey(ifc)}})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Caller != nil || len(snap.AEFs) != 0 || len(snap.Interfaces) != 0 {
			t.Errorf("%s: a refused import wrote %s", name, dump(snap))
		}
		for id, want := range map[string]*security.Principal{f.inv: f.invokerPrincipal(), f.aef2: {ID: f.aef2, Role: security.RoleAEF}} {
			snap, err := b.Store.Load(ctx, security.Query{CallerID: id})
			if err != nil {
				t.Fatal(err)
			}
			equal(t, name+": Caller "+id, snap.Caller, want)
		}
	}
}

func testRemoveAPI(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	if _, err := b.admin().RemoveAPI(ctx, f.api1); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{AefIDs: []string{f.aef1, f.aef2}, InterfaceKeys: []string{f.keyOne(), f.keyShared()}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], &security.AEF{AefID: f.aef1, APIs: []security.PublishedAPI{f.api2AtAEF1()}})
	if a := snap.AEFs[f.aef2]; a != nil && len(a.APIs) > 0 {
		t.Errorf("AEFs[aef2] still lists %s", dump(a.APIs))
	}
	if l, ok := snap.Interfaces[f.keyOne()]; ok {
		t.Errorf("Interfaces[one] still indexed: %s", dump(l))
	}
	equal(t, "Interfaces[shared]", sortedAPIs(snap.Interfaces[f.keyShared()]), []security.PublishedAPI{f.api2AtShared()})

	for _, id := range []string{f.api1, newID("api")} {
		if _, err := b.admin().RemoveAPI(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveAPI(%s) of an absent API = %v, want ErrNotFound", id, err)
		}
	}
	// The API can be published again after removal.
	mustImport(t, b, f.doc)
	snap, err = b.Store.Load(ctx, security.Query{AefIDs: []string{f.aef1}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "AEFs[aef1] after re-publishing", snap.AEFs[f.aef1], f.catalogue1())
}

func testRemoveAEF(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	callerOf := func(id string) *security.Principal {
		t.Helper()
		snap, err := b.Store.Load(ctx, security.Query{CallerID: id})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Caller
	}

	// aef2 still publishes api1: refused, nothing changed.
	if err := b.admin().RemoveAEF(ctx, f.aef2); !errors.Is(err, security.ErrExists) {
		t.Fatalf("RemoveAEF of a publishing AEF = %v, want ErrExists", err)
	}
	equal(t, "Caller aef2", callerOf(f.aef2), &security.Principal{ID: f.aef2, Role: security.RoleAEF})

	if _, err := b.admin().RemoveAPI(ctx, f.api1); err != nil {
		t.Fatal(err)
	}
	if err := b.admin().RemoveAEF(ctx, f.aef2); err != nil {
		t.Fatalf("RemoveAEF of an AEF publishing nothing: %v", err)
	}
	if p := callerOf(f.aef2); p != nil {
		t.Errorf("removed AEF still loads as %s", dump(p))
	}
	for _, id := range []string{f.aef2, newID("aef"), f.inv} { // removed, unknown, the other role
		if err := b.admin().RemoveAEF(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveAEF(%s) = %v, want ErrNotFound", id, err)
		}
	}
	equal(t, "Caller inv", callerOf(f.inv), f.invokerPrincipal())
	equal(t, "Caller aef1", callerOf(f.aef1), &security.Principal{ID: f.aef1, Role: security.RoleAEF})
}

func testRemoveInvoker(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	mustCreate(t, b, f.context())

	if err := b.admin().RemoveInvoker(ctx, f.aef1); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("RemoveInvoker of an AEF = %v, want ErrNotFound", err)
	}
	if err := b.admin().RemoveInvoker(ctx, f.inv); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, APIInvokerID: f.inv})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Caller != nil || snap.Context != nil {
		t.Errorf("after RemoveInvoker Load = %s, want neither record nor context", dump(snap))
	}
	for _, id := range []string{f.inv, newID("inv")} {
		if err := b.admin().RemoveInvoker(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveInvoker(%s) = %v, want ErrNotFound", id, err)
		}
	}
	snap, err = b.Store.Load(ctx, security.Query{CallerID: f.aef1, AefIDs: []string{f.aef1}})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Caller aef1", snap.Caller, &security.Principal{ID: f.aef1, Role: security.RoleAEF})
	equal(t, "AEFs[aef1]", snap.AEFs[f.aef1], f.catalogue1())
}

// testRevokedCertificate: a revocation and the pushes it owes commit in one change; Load reads
// it under the caller's certificate key with the rest of the request, and Records lists it.
func testRevokedCertificate(t *testing.T, b Backend) {
	ctx := t.Context()
	f := newFixture()
	mustImport(t, b, f.doc)
	thumb := newID("thumb")
	rev := security.RevokedCertificate{Key: thumb, PrincipalID: f.inv, Issuer: "CN=test CA", Serial: "1f", SubjectCN: f.inv,
		NotAfter: time.Now().Add(time.Hour).UTC().Truncate(time.Second), RevokedAt: time.Now().UTC().Truncate(time.Second)}
	owed := security.Owed{ID: "p" + newID("push"), Kind: security.ToAEF, APIInvokerID: f.inv, Destination: "https://aef.example.com/aef-security/v1/revoke-authorization",
		Notification: capif.SecurityNotification{APIInvokerID: f.inv, AefID: f.aef1, APIIDs: []string{f.api1}, Cause: capif.UnexpectedReason}}
	if err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.PutRevokedCertificate(&rev); err != nil {
			return err
		}
		return tx.Owe([]security.Owed{owed})
	}); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, CertKey: thumb})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "RevokedCert", snap.RevokedCert, &rev)
	if snap.Caller == nil {
		t.Error("the caller was not read beside the revocation")
	}
	if snap, err := b.Store.Load(ctx, security.Query{CallerID: f.inv, CertKey: newID("thumb")}); err != nil || snap.RevokedCert != nil {
		t.Errorf("another certificate key: %+v, %v", snap.RevokedCert, err)
	}
	pending, err := b.Store.Pending(ctx)
	if err != nil || !slices.ContainsFunc(pending, func(o security.Owed) bool { return o.ID == owed.ID && o.Receiver() == security.ToAEF }) {
		t.Errorf("the push was not written with the revocation: %v", err)
	}
	recs, err := b.Registry.Records(ctx)
	if err != nil || !slices.ContainsFunc(recs.RevokedCertificates, func(c security.RevokedCertificate) bool { return c.Key == thumb }) {
		t.Errorf("Records does not list the revocation: %v", err)
	}
	// A change that fails writes neither.
	other := rev
	other.Key = newID("thumb")
	boom := errors.New("boom")
	if err := b.Registry.Update(ctx, func(tx security.RegistryTx) error {
		if err := tx.PutRevokedCertificate(&other); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}
	if snap, _ := b.Store.Load(ctx, security.Query{CertKey: other.Key}); snap.RevokedCert != nil {
		t.Error("a failed change wrote its revocation")
	}
}
