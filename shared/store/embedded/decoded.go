package embedded

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/capifcore/capif-security/shared/security"
)

// maxDecoded bounds the decoded-record cache; when full it starts again empty, so memory stays
// at most maxDecoded records (each its raw bytes plus one decoded copy).
const maxDecoded = 4096

// decoded remembers, for the records every request reads (principals, contexts and their AEF
// index), the bytes last decoded and the value they decoded to. It is consistent by
// construction: a hit requires the bytes stored now, read in the caller's transaction, to equal
// the remembered bytes, and decoding is a function of the bytes, so a hit returns exactly what
// decoding would (as a deep copy, so callers still own what they get). No invalidation is needed:
// a write changes the bytes, and the next read misses.
//
// A hit without a transaction (fresh) needs more: each entry carries the write generation
// (DB.gen) read before the transaction that last saw its bytes began. The generation is odd
// from before a write transaction begins until after it returns, even otherwise. An even
// generation read before the reading transaction means no write was under way, so that
// transaction saw every committed write; the generation still being that even value means no
// write has begun since: the entry's bytes are the bytes stored now, and every entry with that
// generation was read from the same state (never an old caller beside a new context).
type decoded struct {
	mu sync.RWMutex
	m  map[decodedKey]*decodedValue
}

type decodedKey struct{ bucket, id string }

type decodedValue struct {
	raw []byte // a private copy: bbolt's slices are only valid inside their transaction
	v   any    // never handed out or mutated: callers get clones
	gen atomic.Uint64
}

// lookup returns a clone of the value raw decoded to, if raw is what was cached for the key,
// raw having been read in a transaction begun at write generation gen (which the entry then
// carries, unless it carries a later one).
func (d *decoded) lookup(bucket, id string, raw []byte, gen uint64) (any, bool) {
	d.mu.RLock()
	e := d.m[decodedKey{bucket, id}]
	d.mu.RUnlock()
	if e == nil || !bytes.Equal(e.raw, raw) {
		return nil, false
	}
	for old := e.gen.Load(); old < gen && !e.gen.CompareAndSwap(old, gen); old = e.gen.Load() {
	}
	return cloneRecord(e.v), true
}

// fresh returns a clone of the value cached for the key if no write has begun since its bytes
// were last read: gen, the generation now (even: the caller checks), is still the entry's.
func (d *decoded) fresh(bucket, id string, gen uint64) (any, bool) {
	d.mu.RLock()
	e := d.m[decodedKey{bucket, id}]
	d.mu.RUnlock()
	if e == nil || e.gen.Load() != gen {
		return nil, false
	}
	return cloneRecord(e.v), true
}

// store remembers v (which the caller must not keep or mutate) as the decoding of raw, read in
// a transaction begun at write generation gen.
func (d *decoded) store(bucket, id string, raw []byte, v any, gen uint64) {
	e := &decodedValue{raw: bytes.Clone(raw), v: v}
	e.gen.Store(gen)
	d.mu.Lock()
	if d.m == nil || len(d.m) >= maxDecoded {
		d.m = make(map[decodedKey]*decodedValue, 64)
	}
	d.m[decodedKey{bucket, id}] = e
	d.mu.Unlock()
}

// cloneRecord deep-copies the record types the cache holds (slices and pointers fresh, nil and
// empty kept apart, as decoding gives them). TestCloneRecordShares nothing guards new fields.
func cloneRecord(v any) any {
	switch v := v.(type) {
	case *security.Principal:
		p := *v
		p.SecretHash = slices.Clone(v.SecretHash)
		return &p
	case *security.SecurityContext:
		sc := *v
		if v.Entries != nil {
			sc.Entries = make([]security.Entry, len(v.Entries))
			for i := range v.Entries {
				sc.Entries[i] = cloneEntry(&v.Entries[i])
			}
		}
		return &sc
	case *[]string:
		s := slices.Clone(*v)
		return &s
	}
	panic("embedded: cloneRecord: unexpected type") // only the types get caches are ever stored
}

func cloneEntry(e *security.Entry) security.Entry {
	c := *e
	if e.InterfaceDetails != nil {
		d := *e.InterfaceDetails
		if d.Port != nil {
			port := *d.Port
			d.Port = &port
		}
		d.SecurityMethods = slices.Clone(d.SecurityMethods)
		c.InterfaceDetails = &d
	}
	c.PrefSecurityMethods = slices.Clone(e.PrefSecurityMethods)
	c.AuthorizationFlow = slices.Clone(e.AuthorizationFlow)
	c.GrantType = slices.Clone(e.GrantType)
	c.Targets = slices.Clone(e.Targets)
	return c
}

// getDecoded is get through the cache: T is one of the types cloneRecord copies; gen is the
// write generation read before tx began.
func getDecoded[T any](db *DB, tx *bolt.Tx, gen uint64, bucket []byte, id string) (*T, error) {
	if id == "" {
		return nil, nil
	}
	raw := tx.Bucket(bucket).Get([]byte(id))
	if raw == nil {
		return nil, nil
	}
	if v, ok := db.decoded.lookup(string(bucket), id, raw, gen); ok {
		return v.(*T), nil
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("%s %q: corrupt record: %w", bucket, id, err)
	}
	db.decoded.store(string(bucket), id, raw, cloneRecord(v), gen)
	return v, nil
}
