package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"path/filepath"
	"reflect"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"

	"github.com/capifcore/capif-security/shared/security"
)

// fill sets every field reachable from v to a non-zero value (one element per slice), so that a
// field added to a cached type and not deep-copied by cloneRecord shows up as shared memory.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

// shared reports a pointer or slice array that a and b (same type) both reference.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		for i := range a.NumField() {
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := range a.Len() {
			if p := shared(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return path
		}
	}
	return ""
}

func TestCloneRecordSharesNothing(t *testing.T) {
	for _, v := range []any{&security.Principal{}, &security.SecurityContext{}, &[]string{}} {
		fill(reflect.ValueOf(v).Elem())
		c := cloneRecord(v)
		if !reflect.DeepEqual(v, c) {
			t.Errorf("%T: clone differs:\n%+v\n%+v", v, v, c)
		}
		if p := shared(reflect.ValueOf(v), reflect.ValueOf(c), reflect.TypeOf(v).String()); p != "" {
			t.Errorf("%T: the clone shares %s with the cached value", v, p)
		}
	}
}

// oneContext is a store holding the context of invoker "inv" (one OAUTH entry for aef1).
func oneContext(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	sc := &security.SecurityContext{APIInvokerID: "inv", NotificationDestination: "https://a.example/cb", Entries: []security.Entry{
		{AefID: "aef1", PrefSecurityMethods: []capifMethod{"OAUTH"}, SelSecurityMethod: "OAUTH", Targets: []security.Target{{AefID: "aef1", APIID: "a", APIName: "alpha"}}},
	}}
	if err := db.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestLoadCacheFollowsTheStoredBytes: a hit is exactly what decoding the stored bytes gives, a
// write is seen at once, and what a caller mutates never reaches the next caller.
func TestLoadCacheFollowsTheStoredBytes(t *testing.T) {
	ctx := context.Background()
	db := oneContext(t)
	load := func() *security.SecurityContext {
		t.Helper()
		snap, err := db.Load(ctx, security.Query{APIInvokerID: "inv", ForAEF: "aef1"})
		if err != nil || snap.Context == nil {
			t.Fatalf("load: %v %+v", err, snap)
		}
		return snap.Context
	}
	decodeStored := func() *security.SecurityContext {
		t.Helper()
		var want security.SecurityContext
		if err := db.bolt.View(func(tx *bolt.Tx) error { _, err := get(tx, bucketContexts, "inv", &want); return err }); err != nil {
			t.Fatal(err)
		}
		return &want
	}
	first := load()
	first.Entries[0].Targets[0].APIName = "mutated by a caller"
	first.Entries = append(first.Entries, security.Entry{AefID: "x"})
	if got := load(); !reflect.DeepEqual(got, decodeStored()) {
		t.Fatalf("a caller's mutation reached the cache:\n%+v", got)
	}
	upd := load()
	upd.NotificationDestination = "https://b.example/cb"
	if err := db.Replace(ctx, upd, nil); err != nil {
		t.Fatal(err)
	}
	if got := load(); got.NotificationDestination != "https://b.example/cb" || got.Version != 2 || !reflect.DeepEqual(got, decodeStored()) {
		t.Fatalf("after a write the cache answered %+v", got)
	}
}

type capifMethod = capif.SecurityMethod

// Loads served without a transaction (loadFresh) never go back in time while a writer replaces
// the context, and once the writer is done they answer its last write; with the generation
// unchanged, the second of two loads is served from the cache.
func TestFreshLoadsFollowConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	db := oneContext(t)
	q := security.Query{APIInvokerID: "inv"}
	if _, err := db.Load(ctx, q); err != nil {
		t.Fatal(err)
	}
	if snap, ok := db.loadFresh(q); !ok || snap.Context == nil || snap.Context.Version != 1 {
		t.Fatalf("a load after a load with no write between was not served from the cache: %v %+v", ok, snap)
	}
	const writes = 200
	done := make(chan error, 1)
	go func() {
		for range writes {
			snap, err := db.Load(ctx, q)
			if err == nil {
				err = db.Replace(ctx, snap.Context, nil)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			last := int64(0)
			for range 2000 {
				snap, err := db.Load(ctx, q)
				if err != nil {
					errs <- err
					return
				}
				if v := snap.Context.Version; v < last {
					errs <- fmt.Errorf("version %d after %d", v, last)
					return
				} else {
					last = v
				}
			}
			errs <- nil
		}()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		snap, err := db.Load(ctx, q)
		if err != nil || snap.Context.Version != 1+writes {
			t.Fatalf("after the writes: %v version %d, want %d", err, snap.Context.Version, 1+writes)
		}
	}
}

// bbolt shows a commit to new readers before Update returns: a load in that window must not be
// served the cached record the write replaced (a second load after a first that saw the write
// would go back in time).
func TestLoadInTheCommitWindowSeesTheWrite(t *testing.T) {
	ctx := context.Background()
	db := oneContext(t)
	q := security.Query{APIInvokerID: "inv"}
	for range 2 { // the second is served from the cache
		if _, err := db.Load(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	snap, _ := db.Load(ctx, q)
	next := *snap.Context
	next.Version, next.NotificationDestination = 2, "https://b.example/cb"
	raw, err := json.Marshal(&next)
	if err != nil {
		t.Fatal(err)
	}
	var inWindow []int64
	err = db.update(func(tx *bolt.Tx) error {
		tx.OnCommit(func() {
			for range 2 {
				snap, err := db.Load(ctx, q)
				if err != nil {
					t.Error(err)
					return
				}
				inWindow = append(inWindow, snap.Context.Version)
			}
		})
		return tx.Bucket(bucketContexts).Put([]byte("inv"), raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inWindow, []int64{2, 2}) {
		t.Errorf("loads after the commit, before Update returned, saw versions %v, want [2 2]", inWindow)
	}
}

func TestLoadAfterCloseFails(t *testing.T) {
	ctx := context.Background()
	db := oneContext(t)
	q := security.Query{APIInvokerID: "inv"}
	for range 2 {
		if _, err := db.Load(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if snap, err := db.Load(ctx, q); err == nil {
		t.Errorf("Load after Close answered %+v", snap)
	}
}
