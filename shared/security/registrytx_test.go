package security_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// memTx is an in-memory RegistryTx that fails the named method (after skip successful calls), so
// the registry rules' error paths can be checked without a back end.
type memTx struct {
	principals map[string]security.Principal
	aefs       map[string]security.AEF
	apis       map[string]capif.ServiceAPIDescription
	ifaces     map[string][]security.PublishedAPI
	fail       string
	skip       int
	fired      bool
}

var errInjected = errors.New("injected failure")

func newMemTx() *memTx {
	return &memTx{principals: map[string]security.Principal{}, aefs: map[string]security.AEF{},
		apis: map[string]capif.ServiceAPIDescription{}, ifaces: map[string][]security.PublishedAPI{}}
}

func (m *memTx) check(method string) error {
	if m.fail != method {
		return nil
	}
	if m.skip > 0 {
		m.skip--
		return nil
	}
	m.fired = true
	return fmt.Errorf("%s: %w", method, errInjected)
}

func (m *memTx) GetPrincipal(id string) (*security.Principal, error) {
	if err := m.check("GetPrincipal"); err != nil {
		return nil, err
	}
	p, ok := m.principals[id]
	if !ok {
		return nil, security.ErrNotFound
	}
	return &p, nil
}

func (m *memTx) PutPrincipal(p *security.Principal) error {
	if err := m.check("PutPrincipal"); err != nil {
		return err
	}
	m.principals[p.ID] = *p
	return nil
}

func (m *memTx) DeletePrincipal(id string) error {
	if err := m.check("DeletePrincipal"); err != nil {
		return err
	}
	delete(m.principals, id)
	return nil
}

func (m *memTx) GetAEF(id string) (*security.AEF, error) {
	if err := m.check("GetAEF"); err != nil {
		return nil, err
	}
	a, ok := m.aefs[id]
	if !ok {
		return nil, security.ErrNotFound
	}
	a.APIs = append([]security.PublishedAPI(nil), a.APIs...)
	return &a, nil
}

func (m *memTx) PutAEF(a *security.AEF) error {
	if err := m.check("PutAEF"); err != nil {
		return err
	}
	if len(a.APIs) == 0 {
		delete(m.aefs, a.AefID)
	} else {
		m.aefs[a.AefID] = *a
	}
	return nil
}

func (m *memTx) GetAPI(id string) (*capif.ServiceAPIDescription, error) {
	if err := m.check("GetAPI"); err != nil {
		return nil, err
	}
	d, ok := m.apis[id]
	if !ok {
		return nil, security.ErrNotFound
	}
	return &d, nil
}

func (m *memTx) PutAPI(d *capif.ServiceAPIDescription) error {
	if err := m.check("PutAPI"); err != nil {
		return err
	}
	m.apis[d.APIID] = *d
	return nil
}

func (m *memTx) DeleteAPI(id string) error {
	if err := m.check("DeleteAPI"); err != nil {
		return err
	}
	delete(m.apis, id)
	return nil
}

func (m *memTx) GetInterface(k string) ([]security.PublishedAPI, error) {
	if err := m.check("GetInterface"); err != nil {
		return nil, err
	}
	l, ok := m.ifaces[k]
	if !ok {
		return nil, security.ErrNotFound
	}
	return append([]security.PublishedAPI(nil), l...), nil
}

func (m *memTx) PutInterface(k string, l []security.PublishedAPI) error {
	if err := m.check("PutInterface"); err != nil {
		return err
	}
	if len(l) == 0 {
		delete(m.ifaces, k)
	} else {
		m.ifaces[k] = l
	}
	return nil
}

// Every failure of the transaction surfaces from the registry rules, on a first import and on a
// re-import (which unpublishes first).
func TestRegistryRulesPropagateTxErrors(t *testing.T) {
	methods := []string{"GetPrincipal", "PutPrincipal", "GetAEF", "PutAEF", "GetAPI", "PutAPI", "GetInterface", "PutInterface"}
	for _, reimport := range []bool{false, true} {
		for _, method := range methods {
			for skip := 0; skip < 3; skip++ {
				tx := newMemTx()
				if reimport {
					if err := security.ApplyImport(tx, registryDoc()); err != nil {
						t.Fatal(err)
					}
				}
				tx.fail, tx.skip = method, skip
				err := security.ApplyImport(tx, registryDoc())
				switch {
				case skip == 0 && !tx.fired:
					t.Errorf("reimport=%v: ApplyImport never calls %s", reimport, method)
				case tx.fired && !errors.Is(err, errInjected):
					t.Errorf("reimport=%v: %s failing (after %d calls) gave %v", reimport, method, skip, err)
				case !tx.fired && err != nil:
					t.Errorf("reimport=%v: %v", reimport, err)
				}
			}
		}
	}
}

func TestRegistryRemoveRules(t *testing.T) {
	fresh := func() *memTx {
		tx := newMemTx()
		if err := security.ApplyImport(tx, registryDoc()); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	// RemoveAPI drops the API from every catalogue and the interface index.
	tx := fresh()
	if err := security.ApplyRemoveAPI(tx, "apiD"); err != nil {
		t.Fatal(err)
	}
	if _, ok := tx.apis["apiD"]; ok {
		t.Error("apiD still stored")
	}
	if _, ok := tx.ifaces[security.InterfaceKey(ifShared)]; ok {
		t.Error("apiD's interface still indexed")
	}
	if a := tx.aefs["aef2"]; len(a.APIs) != 1 || a.APIs[0].APIID != "apiC" {
		t.Errorf("aef2 catalogue %+v", a)
	}
	if err := security.ApplyRemoveAPI(tx, "apiD"); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
	for _, method := range []string{"GetAPI", "GetAEF", "PutAEF", "GetInterface", "PutInterface", "DeleteAPI"} {
		tx := fresh()
		tx.fail = method
		if err := security.ApplyRemoveAPI(tx, "apiD"); !errors.Is(err, errInjected) {
			t.Errorf("ApplyRemoveAPI with %s failing: %v", method, err)
		}
	}
	for _, method := range []string{"GetPrincipal", "GetAEF", "DeletePrincipal"} {
		tx := fresh()
		delete(tx.aefs, "aef3")
		tx.fail = method
		if err := security.ApplyRemoveAEF(tx, "aef3"); !errors.Is(err, errInjected) {
			t.Errorf("ApplyRemoveAEF with %s failing: %v", method, err)
		}
	}
	for _, method := range []string{"GetPrincipal", "DeletePrincipal"} {
		tx := fresh()
		tx.fail = method
		if err := security.ApplyRemoveInvoker(tx, "inv1"); !errors.Is(err, errInjected) {
			t.Errorf("ApplyRemoveInvoker with %s failing: %v", method, err)
		}
	}
	// A catalogue entry whose AEF record vanished is skipped by unpublishing.
	tx = fresh()
	delete(tx.aefs, "aef2")
	delete(tx.ifaces, security.InterfaceKey(ifShared))
	if err := security.ApplyRemoveAPI(tx, "apiD"); err != nil {
		t.Errorf("ApplyRemoveAPI over missing records: %v", err)
	}
}
