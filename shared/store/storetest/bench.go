package storetest

import (
	"testing"

	"github.com/capifcore/capif-security/shared/security"
)

// Benchmark measures the two calls on every request's path against the back end open returns:
// Load of a full query (caller, context, two AEF catalogues, one interface index entry) and
// Replace of a two-entry context. Run it with go test -bench.
func Benchmark(b *testing.B, open func(b *testing.B) Backend) {
	setup := func(b *testing.B) (Backend, *fixture) {
		be := open(b)
		f := newFixture()
		if err := be.admin().ImportRegistry(b.Context(), f.doc); err != nil {
			b.Fatal(err)
		}
		if err := be.Store.Create(b.Context(), f.context()); err != nil {
			b.Fatal(err)
		}
		return be, f
	}
	query := func(f *fixture) security.Query {
		return security.Query{CallerID: f.inv, APIInvokerID: f.inv, AefIDs: []string{f.aef1, f.aef2}, InterfaceKeys: []string{f.keyShared()}}
	}

	b.Run("Load", func(b *testing.B) {
		be, f := setup(b)
		q := query(f)
		b.ReportAllocs()
		for b.Loop() {
			if snap, err := be.Store.Load(b.Context(), q); err != nil || snap.Context == nil {
				b.Fatal(snap, err)
			}
		}
	})

	b.Run("LoadParallel", func(b *testing.B) {
		be, f := setup(b)
		q := query(f)
		ctx := b.Context()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if snap, err := be.Store.Load(ctx, q); err != nil || snap.Context == nil {
					b.Error(snap, err)
					return
				}
			}
		})
	})

	b.Run("Replace", func(b *testing.B) {
		be, f := setup(b)
		sc := f.context()
		sc.Version = 1
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sc.Entries[0].PSK = "psk-" + string(rune('a'+i%26)) // a real change each time
			if err := be.Store.Replace(b.Context(), sc, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
