package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/capifcore/capif-security/shared/security"
)

// The outbox bucket holds each security.Owed as JSON, delivery state included. Records written
// before the state existed decode with zero times: due at once.

// due reports whether a live record may be attempted at now.
func due(o *security.Owed, now time.Time) bool {
	return !o.Dead && !o.NextAttempt.After(now) && !o.ClaimedUntil.After(now)
}

// Due lists every due record.
func (db *DB) Due(ctx context.Context, now time.Time) ([]security.Owed, error) {
	all, err := db.Pending(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(o security.Owed) bool { return !due(&o, now) }), nil
}

// outboxChange reads record id, lets change decide (an error refuses the change), and writes
// what it returns (nil: delete) in one write transaction.
func (db *DB) outboxChange(ctx context.Context, what, id string, change func(o *security.Owed) (*security.Owed, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		raw := b.Get([]byte(id))
		if raw == nil {
			return fmt.Errorf("%w: outbox record %q", security.ErrNotFound, id)
		}
		var o security.Owed
		if err := json.Unmarshal(raw, &o); err != nil {
			return fmt.Errorf("outbox record %q: corrupt record: %w", id, err)
		}
		next, err := change(&o)
		if err != nil {
			return err
		}
		if next == nil {
			return b.Delete([]byte(id))
		}
		return put(b, id, next)
	})
	if err != nil {
		return fmt.Errorf("embedded store: %s: %w", what, err)
	}
	return nil
}

// Claim holds o until until if it is due and unchanged since it was listed.
func (db *DB) Claim(ctx context.Context, o security.Owed, now, until time.Time) error {
	return db.outboxChange(ctx, "claim", o.ID, func(cur *security.Owed) (*security.Owed, error) {
		if !due(cur, now) || cur.Attempts != o.Attempts {
			return nil, fmt.Errorf("%w: outbox record %q is held or changed", security.ErrConflict, o.ID)
		}
		cur.ClaimedUntil = until
		return cur, nil
	})
}

// Attempted stores o's delivery state if the record is still held until held.
func (db *DB) Attempted(ctx context.Context, o security.Owed, held time.Time) error {
	return db.outboxChange(ctx, "attempted", o.ID, func(cur *security.Owed) (*security.Owed, error) {
		if !cur.ClaimedUntil.Equal(held) {
			return nil, fmt.Errorf("%w: outbox record %q is no longer held", security.ErrConflict, o.ID)
		}
		next := *cur
		next.CreatedAt, next.WindowFrom = o.CreatedAt, o.WindowFrom
		next.Attempts, next.LastError, next.NextAttempt, next.Dead = o.Attempts, o.LastError, o.NextAttempt, o.Dead
		next.ClaimedUntil = time.Time{}
		return &next, nil
	})
}

// Redrive makes a dead record due at now with a new retry window.
func (db *DB) Redrive(ctx context.Context, id string, now time.Time) error {
	return db.outboxChange(ctx, "redrive", id, func(cur *security.Owed) (*security.Owed, error) {
		if !cur.Dead {
			return nil, fmt.Errorf("%w: outbox record %q is not dead-lettered", security.ErrNotFound, id)
		}
		cur.Dead, cur.NextAttempt, cur.WindowFrom, cur.ClaimedUntil = false, now, now, time.Time{}
		return cur, nil
	})
}

// Drop deletes a record.
func (db *DB) Drop(ctx context.Context, id string) error {
	return db.outboxChange(ctx, "drop", id, func(*security.Owed) (*security.Owed, error) { return nil, nil })
}
