package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/capifcore/capif-security/shared/security"
)

var (
	bucketKeySet = []byte("keySet")
	keySigning   = []byte("signing")
)

// keySetDoc is the stored key set: its records and their version.
type keySetDoc struct {
	Version int64                 `json:"version"`
	Keys    []security.SigningKey `json:"keys"`
}

var _ security.KeySet = (*DB)(nil)

// LoadKeySet reads the key set.
func (db *DB) LoadKeySet(ctx context.Context) (security.SigningKeys, error) {
	if err := ctx.Err(); err != nil {
		return security.SigningKeys{}, err
	}
	var doc keySetDoc
	err := db.bolt.View(func(tx *bolt.Tx) error {
		_, err := get(tx, bucketKeySet, string(keySigning), &doc)
		return err
	})
	if err != nil {
		return security.SigningKeys{}, fmt.Errorf("embedded store: load key set: %w", err)
	}
	return security.SigningKeys{Version: doc.Version, Keys: doc.Keys}, nil
}

// SaveKeySet stores s if the stored set is still at s.Version.
func (db *DB) SaveKeySet(ctx context.Context, s security.SigningKeys) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		var cur keySetDoc
		if _, err := get(tx, bucketKeySet, string(keySigning), &cur); err != nil {
			return err
		}
		if cur.Version != s.Version {
			return fmt.Errorf("key set at version %d, not %d: %w", cur.Version, s.Version, security.ErrConflict)
		}
		return put(tx.Bucket(bucketKeySet), string(keySigning), keySetDoc{Version: s.Version + 1, Keys: s.Keys})
	})
	if err != nil {
		return fmt.Errorf("embedded store: save key set: %w", err)
	}
	return nil
}
