// Package embedded is the local runner's persistent back end: one bbolt file implementing both
// security.Store and security.Registry, so a restart keeps every security context, registry
// record and undelivered notification.
//
// Layout: one bucket per record kind, keyed by id, values JSON-encoded.
//
//	principals  id           → security.Principal (invokers and AEFs share this id space)
//	aefs        aefId        → security.AEF (the catalogue; absent when the AEF publishes nothing)
//	apis        apiId        → capif.ServiceAPIDescription (as imported; drives unpublishing)
//	interfaces  InterfaceKey → []security.PublishedAPI (interface index)
//	contexts    apiInvokerId → security.SecurityContext
//	contextAefs apiInvokerId → []string, the context's AefIDs (answers Query.ForAEF undecoded;
//	            built from contexts when a file without it is opened)
//	outbox      owed id      → security.Owed
//	meta        "schema"     → format version of this file
//
// bbolt serialises writers and gives readers a consistent snapshot, so every Store read is one
// read transaction and every write (including a whole registry change, Registry.Update) one
// write transaction. Only one process can open the file, so the DB also serializes the
// read-modify-write cycles of each context (security.ContextLocker): its writers never lose an
// optimistic-lock race.
package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

var (
	bucketPrincipals = []byte("principals")
	bucketAEFs       = []byte("aefs")
	bucketAPIs       = []byte("apis")
	bucketInterfaces = []byte("interfaces")
	bucketContexts   = []byte("contexts")
	bucketOutbox     = []byte("outbox")
	bucketCtxAEFs    = []byte("contextAefs")
	bucketMeta       = []byte("meta")
	bucketRevoked    = []byte("revokedCertificates") // by capif.CertificateKey

	keySchema = []byte("schema")
	// Schema 2 added the contextAefs index. A schema-1 file is migrated at Open; a build that
	// knows only schema 1 refuses a schema-2 file, so it can never write contexts past the index.
	schemaVersion = []byte("2")
	schemaV1      = []byte("1")
)

// lockTimeout bounds the wait for the file lock: a second process on the same file fails fast
// instead of hanging.
const lockTimeout = 2 * time.Second

// DB is a bbolt-backed security.Store and security.Registry. It is safe for concurrent use.
type DB struct {
	bolt  *bolt.DB
	locks contextLocks
}

var (
	_ security.Store         = (*DB)(nil)
	_ security.Registry      = (*DB)(nil)
	_ security.ContextLocker = (*DB)(nil)
)

// Open opens (creating if needed) the database file at path. The file and a missing parent
// directory are created readable by the owner only: contexts hold pre-shared keys.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("embedded store: open %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPrincipals, bucketAEFs, bucketAPIs, bucketInterfaces, bucketContexts, bucketOutbox, bucketMeta, bucketRevoked, bucketKeySet} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := dropExpiredRevocations(tx, time.Now()); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil || bytes.Equal(v, schemaV1):
			// A new file, or one written before the index: (re)build it from the contexts.
			if tx.Bucket(bucketCtxAEFs) != nil {
				if err := tx.DeleteBucket(bucketCtxAEFs); err != nil {
					return err
				}
			}
			if err := indexContextAEFs(tx); err != nil {
				return err
			}
			return meta.Put(keySchema, schemaVersion)
		case !bytes.Equal(v, schemaVersion):
			return fmt.Errorf("file has schema %q, this build reads %q", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("embedded store: initialise %s: %w", path, err)
	}
	return &DB{bolt: b, locks: contextLocks{held: map[string]chan struct{}{}}}, nil
}

// dropExpiredRevocations deletes the revoked certificates past their Until: they fail
// verification anyway. A record that does not decode is kept: its certificate stays refused
// (Load reports the record) rather than being silently un-revoked.
func dropExpiredRevocations(tx *bolt.Tx, now time.Time) error {
	b := tx.Bucket(bucketRevoked)
	var expired [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		var c security.RevokedCertificate
		if err := json.Unmarshal(v, &c); err == nil && now.After(c.Until()) {
			expired = append(expired, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// indexContextAEFs builds the contextAefs bucket of a file written before it existed.
func indexContextAEFs(tx *bolt.Tx) error {
	idx, err := tx.CreateBucket(bucketCtxAEFs)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketContexts).ForEach(func(k, v []byte) error {
		var sc security.SecurityContext
		if err := json.Unmarshal(v, &sc); err != nil {
			return fmt.Errorf("contexts %q: corrupt record: %w", k, err)
		}
		return put(idx, string(k), sc.AefIDs())
	})
}

// contextLocks holds one lock per context being written; a lock is a channel so that waiting
// for it can end with the request's context.
type contextLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when released
}

// LockContext waits until no other writer of apiInvokerID holds the lock, or until ctx ends.
func (db *DB) LockContext(ctx context.Context, apiInvokerID string) (func(), error) {
	l := &db.locks
	for {
		l.mu.Lock()
		wait, busy := l.held[apiInvokerID]
		if !busy {
			mine := make(chan struct{})
			l.held[apiInvokerID] = mine
			l.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					l.mu.Lock()
					delete(l.held, apiInvokerID)
					l.mu.Unlock()
					close(mine)
				})
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("embedded store: waiting for the context lock: %w", ctx.Err())
		}
	}
}

// Close releases the file. Operations after Close fail.
func (db *DB) Close() error { return db.bolt.Close() }

// --- security.Store ---------------------------------------------------------------------------

// Load reads everything q names in one read transaction. Every value is decoded from the bytes
// stored now, so the caller owns (and may mutate) what it gets.
func (db *DB) Load(ctx context.Context, q security.Query) (*security.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	snap := &security.Snapshot{}
	if len(q.AefIDs) > 0 {
		snap.AEFs = make(map[string]*security.AEF, len(q.AefIDs))
	}
	if len(q.InterfaceKeys) > 0 {
		snap.Interfaces = make(map[string][]security.PublishedAPI, len(q.InterfaceKeys))
	}
	if len(q.Principals) > 0 {
		snap.Principals = make(map[string]*security.Principal, len(q.Principals))
	}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if _, err := getNew(tx, bucketPrincipals, q.CallerID, &snap.Caller); err != nil {
			return err
		}
		if q.APIInvokerID != "" && !excluded(tx, q) {
			if _, err := getNew(tx, bucketContexts, q.APIInvokerID, &snap.Context); err != nil {
				return err
			}
		}
		for _, id := range q.AefIDs {
			var a *security.AEF
			if ok, err := getNew(tx, bucketAEFs, id, &a); err != nil {
				return err
			} else if ok {
				snap.AEFs[id] = a
			}
		}
		if q.CertKey != "" {
			if _, err := getNew(tx, bucketRevoked, q.CertKey, &snap.RevokedCert); err != nil {
				return err
			}
		}
		for _, id := range q.Principals {
			var p *security.Principal
			if ok, err := getNew(tx, bucketPrincipals, id, &p); err != nil {
				return err
			} else if ok {
				snap.Principals[id] = p
			}
		}
		for _, k := range q.InterfaceKeys {
			var list []security.PublishedAPI
			if ok, err := get(tx, bucketInterfaces, k, &list); err != nil {
				return err
			} else if ok {
				snap.Interfaces[k] = list
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store: load: %w", err)
	}
	return snap, nil
}

// excluded reports whether q.ForAEF rules the context out by its index entry alone; no entry
// rules nothing out: decode, and let the domain decide.
func excluded(tx *bolt.Tx, q security.Query) bool {
	if q.ForAEF == "" {
		return false
	}
	var aefs []string
	ok, err := get(tx, bucketCtxAEFs, q.APIInvokerID, &aefs)
	return err == nil && ok && !slices.Contains(aefs, q.ForAEF)
}

// Create stores sc with Version 1; ErrExists when the invoker already has a context.
func (db *DB) Create(ctx context.Context, sc *security.SecurityContext) error {
	if err := checkContext(ctx, sc); err != nil {
		return err
	}
	stored := *sc
	stored.Version = 1
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContexts)
		if b.Get([]byte(sc.APIInvokerID)) != nil {
			return fmt.Errorf("%w: security context of %q", security.ErrExists, sc.APIInvokerID)
		}
		if err := put(tx.Bucket(bucketCtxAEFs), sc.APIInvokerID, sc.AefIDs()); err != nil {
			return err
		}
		return put(b, sc.APIInvokerID, &stored)
	})
	if err != nil {
		return fmt.Errorf("embedded store: create: %w", err)
	}
	sc.Version = stored.Version
	return nil
}

// Replace stores sc if the stored version still equals sc.Version, with the version bumped, or
// deletes the context when sc has no entries; owed goes to the outbox in the same transaction.
// On success sc.Version is the new version.
func (db *DB) Replace(ctx context.Context, sc *security.SecurityContext, owed []security.Owed) error {
	if err := checkContext(ctx, sc); err != nil {
		return err
	}
	for _, o := range owed {
		if o.ID == "" {
			return errors.New("embedded store: replace: an owed notification has no id")
		}
	}
	stored := *sc
	stored.Version = sc.Version + 1
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContexts)
		var cur struct {
			Version int64 `json:"version"`
		}
		switch ok, err := get(tx, bucketContexts, sc.APIInvokerID, &cur); {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("%w: security context of %q", security.ErrNotFound, sc.APIInvokerID)
		case cur.Version != sc.Version:
			return fmt.Errorf("%w: security context of %q is at version %d, not %d", security.ErrConflict, sc.APIInvokerID, cur.Version, sc.Version)
		}
		var err error
		if len(sc.Entries) == 0 {
			if err = tx.Bucket(bucketCtxAEFs).Delete([]byte(sc.APIInvokerID)); err == nil {
				err = b.Delete([]byte(sc.APIInvokerID))
			}
		} else if err = put(tx.Bucket(bucketCtxAEFs), sc.APIInvokerID, sc.AefIDs()); err == nil {
			err = put(b, sc.APIInvokerID, &stored)
		}
		if err != nil {
			return err
		}
		return putOwed(tx, owed)
	})
	if err != nil {
		return fmt.Errorf("embedded store: replace: %w", err)
	}
	sc.Version = stored.Version
	return nil
}

// Delivered removes an outbox record; removing one that is already gone is not an error, so a
// repeated delivery confirmation is harmless.
func (db *DB) Delivered(ctx context.Context, owedID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if owedID == "" {
		return nil
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).Delete([]byte(owedID))
	})
	if err != nil {
		return fmt.Errorf("embedded store: delivered: %w", err)
	}
	return nil
}

// Pending lists the undelivered notifications of the outbox, ordered by id.
func (db *DB) Pending(ctx context.Context) ([]security.Owed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []security.Owed
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var o security.Owed
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("outbox record %q: %w", k, err)
			}
			out = append(out, o)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store: pending: %w", err)
	}
	return out, nil
}

// ContextsWithAPI scans every context for a target of apiID; ids come in key order. This is an
// admin operation, so a scan is acceptable.
func (db *DB) ContextsWithAPI(ctx context.Context, apiID string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ids []string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContexts).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var sc security.SecurityContext
			if err := json.Unmarshal(v, &sc); err != nil {
				return fmt.Errorf("security context %q: %w", k, err)
			}
			if covers(&sc, apiID) {
				ids = append(ids, sc.APIInvokerID)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store: contexts with API: %w", err)
	}
	return ids, nil
}

func covers(sc *security.SecurityContext, apiID string) bool {
	for _, e := range sc.Entries {
		for _, t := range e.Targets {
			if t.APIID == apiID {
				return true
			}
		}
	}
	return false
}

func checkContext(ctx context.Context, sc *security.SecurityContext) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if sc == nil || sc.APIInvokerID == "" {
		return errors.New("embedded store: a security context needs an apiInvokerId")
	}
	return nil
}

// --- security.Registry ------------------------------------------------------------------------

// Update runs fn in one bbolt write transaction: fn's error rolls everything back. bbolt
// serialises writers, so fn runs exactly once.
func (db *DB) Update(ctx context.Context, fn func(security.RegistryTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.bolt.Update(func(tx *bolt.Tx) error { return fn(&regTx{tx: tx}) }); err != nil {
		return fmt.Errorf("embedded store: registry update: %w", err)
	}
	return nil
}

// Records lists the principals and the service APIs in one read transaction, in key order.
func (db *DB) Records(ctx context.Context) (security.RegistryRecords, error) {
	var out security.RegistryRecords
	if err := ctx.Err(); err != nil {
		return out, err
	}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPrincipals).ForEach(func(k, v []byte) error {
			var p security.Principal
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("principal %q: corrupt record: %w", k, err)
			}
			out.Principals = append(out.Principals, p)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRevoked).ForEach(func(k, v []byte) error {
			var c security.RevokedCertificate
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("revoked certificate %q: corrupt record: %w", k, err)
			}
			out.RevokedCertificates = append(out.RevokedCertificates, c)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketAPIs).ForEach(func(k, v []byte) error {
			var d capif.ServiceAPIDescription
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("service API %q: corrupt record: %w", k, err)
			}
			out.APIs = append(out.APIs, d)
			return nil
		})
	})
	if err != nil {
		return security.RegistryRecords{}, fmt.Errorf("embedded store: records: %w", err)
	}
	return out, nil
}

// regTx is security.RegistryTx over one bbolt write transaction.
type regTx struct {
	tx *bolt.Tx
}

// Prefetch does nothing: reads come from the memory-mapped file.
func (r *regTx) Prefetch([]security.RecordKey) error { return nil }

func (r *regTx) GetPrincipal(id string) (*security.Principal, error) {
	var p security.Principal
	if err := r.must(bucketPrincipals, "principal", id, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (r *regTx) PutPrincipal(p *security.Principal) error {
	return put(r.tx.Bucket(bucketPrincipals), p.ID, p)
}

func (r *regTx) PutRevokedCertificate(c *security.RevokedCertificate) error {
	return put(r.tx.Bucket(bucketRevoked), c.Key, c)
}

func (r *regTx) Owe(owed []security.Owed) error { return putOwed(r.tx, owed) }

func (r *regTx) DeletePrincipal(id string) error {
	return r.tx.Bucket(bucketPrincipals).Delete([]byte(id))
}

func (r *regTx) GetAEF(aefID string) (*security.AEF, error) {
	var a security.AEF
	if err := r.must(bucketAEFs, "AEF catalogue", aefID, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// PutAEF stores the catalogue; an empty one is deleted, so an AEF that publishes nothing (or was
// removed) leaves no record behind.
func (r *regTx) PutAEF(a *security.AEF) error {
	b := r.tx.Bucket(bucketAEFs)
	if len(a.APIs) == 0 {
		return b.Delete([]byte(a.AefID))
	}
	return put(b, a.AefID, a)
}

func (r *regTx) GetAPI(apiID string) (*capif.ServiceAPIDescription, error) {
	var d capif.ServiceAPIDescription
	if err := r.must(bucketAPIs, "service API", apiID, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (r *regTx) PutAPI(d *capif.ServiceAPIDescription) error {
	return put(r.tx.Bucket(bucketAPIs), d.APIID, d)
}

func (r *regTx) DeleteAPI(apiID string) error {
	return r.tx.Bucket(bucketAPIs).Delete([]byte(apiID))
}

func (r *regTx) GetInterface(key string) ([]security.PublishedAPI, error) {
	var list []security.PublishedAPI
	if err := r.must(bucketInterfaces, "interface", key, &list); err != nil {
		return nil, err
	}
	return list, nil
}

func (r *regTx) PutInterface(key string, apis []security.PublishedAPI) error {
	b := r.tx.Bucket(bucketInterfaces)
	if len(apis) == 0 {
		return b.Delete([]byte(key))
	}
	return put(b, key, apis)
}

func (r *regTx) DeleteContext(apiInvokerID string, owe func(*security.SecurityContext) ([]security.Owed, error)) error {
	if apiInvokerID == "" {
		return nil // no context can have it
	}
	var sc security.SecurityContext
	if ok, err := get(r.tx, bucketContexts, apiInvokerID, &sc); err != nil || !ok {
		return err
	}
	if owe != nil {
		owed, err := owe(&sc)
		if err != nil {
			return err
		}
		if err := putOwed(r.tx, owed); err != nil {
			return err
		}
	}
	if err := r.tx.Bucket(bucketCtxAEFs).Delete([]byte(apiInvokerID)); err != nil {
		return err
	}
	return r.tx.Bucket(bucketContexts).Delete([]byte(apiInvokerID))
}

// putOwed adds new outbox records; ids are random, and a clash would silently drop a
// notification, so it is refused.
func putOwed(tx *bolt.Tx, owed []security.Owed) error {
	out := tx.Bucket(bucketOutbox)
	for i := range owed {
		if owed[i].ID == "" {
			return errors.New("an owed notification has no id")
		}
		if out.Get([]byte(owed[i].ID)) != nil {
			return fmt.Errorf("%w: outbox record %q", security.ErrExists, owed[i].ID)
		}
		if err := put(out, owed[i].ID, &owed[i]); err != nil {
			return err
		}
	}
	return nil
}

// must is get with ErrNotFound for a missing item, as RegistryTx getters answer.
func (r *regTx) must(bucket []byte, what, id string, v any) error {
	ok, err := get(r.tx, bucket, id, v)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s %q", security.ErrNotFound, what, id)
	}
	return err
}

// --- encoding ---------------------------------------------------------------------------------

// get decodes the value of id into v; false when absent. Decoding copies out of the mmap'd page,
// so v stays valid after the transaction.
func get(tx *bolt.Tx, bucket []byte, id string, v any) (bool, error) {
	if id == "" {
		return false, nil
	}
	raw := tx.Bucket(bucket).Get([]byte(id))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%s %q: corrupt record: %w", bucket, id, err)
	}
	return true, nil
}

// getNew is get into a new *T, left nil when absent.
func getNew[T any](tx *bolt.Tx, bucket []byte, id string, dst **T) (bool, error) {
	v := new(T)
	ok, err := get(tx, bucket, id, v)
	if ok {
		*dst = v
	}
	return ok, err
}

func put(b *bolt.Bucket, id string, v any) error {
	if id == "" {
		return errors.New("empty key")
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), raw)
}
