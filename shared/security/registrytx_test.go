package security_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
)

// The registry rules on an in-memory Registry whose transaction fails on a chosen method, so
// their error paths are driven without a back end.

func registryEnv(t *testing.T, imported bool) (*security.Service, *securitytest.Registry) {
	t.Helper()
	reg := securitytest.NewRegistry()
	svc := security.New(newEnv(t).db, reg, nil, &securitytest.Notifier{}, nil, security.Config{})
	if imported {
		if err := svc.ImportRegistry(ctx, registryDoc()); err != nil {
			t.Fatal(err)
		}
	}
	return svc, reg
}

// Every failure of the transaction surfaces from the registry rules, on a first import and on a
// re-import (which unpublishes first), and a failed change writes nothing.
func TestRegistryRulesPropagateTxErrors(t *testing.T) {
	t.Parallel()
	methods := []string{"Prefetch", "GetPrincipal", "PutPrincipal", "GetAEF", "PutAEF", "GetAPI", "PutAPI", "GetInterface", "PutInterface"}
	for _, reimport := range []bool{false, true} {
		for _, method := range methods {
			for skip := 0; skip < 3; skip++ {
				svc, reg := registryEnv(t, reimport)
				before := reg.Data()
				reg.FailOn(method, skip)
				err := svc.ImportRegistry(ctx, registryDoc())
				switch fired := reg.Fired(); {
				case skip == 0 && !fired:
					t.Errorf("reimport=%v: importing never calls %s", reimport, method)
				case fired && !errors.Is(err, securitytest.ErrInjected):
					t.Errorf("reimport=%v: %s failing (after %d calls) gave %v", reimport, method, skip, err)
				case fired && dump(reg.Data()) != dump(before):
					t.Errorf("reimport=%v: %s failing (after %d calls) wrote part of the change", reimport, method, skip)
				case !fired && err != nil:
					t.Errorf("reimport=%v: %v", reimport, err)
				}
			}
		}
	}
}

func TestRegistryRemoveRules(t *testing.T) {
	t.Parallel()
	// RemoveAPI drops the API from every catalogue and the interface index.
	svc, reg := registryEnv(t, true)
	if _, err := svc.RemoveAPI(ctx, "apiD"); err != nil {
		t.Fatal(err)
	}
	d := reg.Data()
	if _, ok := d.APIs["apiD"]; ok {
		t.Error("apiD still stored")
	}
	if _, ok := d.Interfaces[security.InterfaceKey(ifShared)]; ok {
		t.Error("apiD's interface still indexed")
	}
	if a := d.AEFs["aef2"]; len(a.APIs) != 1 || a.APIs[0].APIID != "apiC" {
		t.Errorf("aef2 catalogue %+v", a)
	}
	if _, err := svc.RemoveAPI(ctx, "apiD"); !errors.Is(err, security.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}

	tests := []struct {
		op      string
		methods []string
		run     func(svc *security.Service) error
	}{
		{op: "RemoveAPI", methods: []string{"GetAPI", "Prefetch", "GetAEF", "PutAEF", "GetInterface", "PutInterface", "DeleteAPI"},
			run: func(svc *security.Service) error { _, err := svc.RemoveAPI(ctx, "apiD"); return err }},
		{op: "RemoveAEF", methods: []string{"GetPrincipal", "GetAEF", "DeletePrincipal"},
			run: func(svc *security.Service) error { return svc.RemoveAEF(ctx, "aef3") }},
		{op: "RemoveInvoker", methods: []string{"GetPrincipal", "DeleteContext", "DeletePrincipal"},
			run: func(svc *security.Service) error { return svc.RemoveInvoker(ctx, "inv1") }},
	}
	for _, tc := range tests {
		for _, method := range tc.methods {
			svc, reg := registryEnv(t, true)
			before := reg.Data()
			reg.FailOn(method, 0)
			if err := tc.run(svc); !errors.Is(err, securitytest.ErrInjected) {
				t.Errorf("%s with %s failing: %v", tc.op, method, err)
			}
			if dump(reg.Data()) != dump(before) {
				t.Errorf("%s with %s failing wrote part of the change", tc.op, method)
			}
		}
	}
}

// Offboarding deletes the invoker's context once, in the change that deletes its record.
func TestRemoveInvokerDeletesContextOnce(t *testing.T) {
	t.Parallel()
	svc, reg := registryEnv(t, true)
	if err := svc.RemoveInvoker(ctx, "inv1"); err != nil {
		t.Fatal(err)
	}
	d := reg.Data()
	if _, ok := d.Principals["inv1"]; ok {
		t.Error("inv1 still registered")
	}
	if !slices.Equal(d.DeletedContexts, []string{"inv1"}) {
		t.Errorf("contexts deleted: %q, want inv1's once", d.DeletedContexts)
	}
	for _, id := range []string{"inv1", "aef1", "nobody"} {
		if err := svc.RemoveInvoker(ctx, id); !errors.Is(err, security.ErrNotFound) {
			t.Errorf("RemoveInvoker(%s) = %v, want ErrNotFound", id, err)
		}
	}
	if d := reg.Data(); len(d.DeletedContexts) != 1 {
		t.Errorf("a refused removal deleted a context: %q", d.DeletedContexts)
	}
}
