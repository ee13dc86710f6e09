package security

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// replace is Store.Replace inside retry: a context deleted since it was read (ErrNotFound) is
// another writer's win like a version conflict, so the operation reads again and answers as for a
// missing context instead of failing with an internal error.
func (s *Service) replace(ctx context.Context, sc *SecurityContext, owed []Owed) error {
	err := s.store.Replace(ctx, sc, owed)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// retryWrite is retry for a read-modify-write of one context, serialized with the other writers
// of that context when the store can do so (ContextLocker), so that in one process no writer
// loses a race; "" takes no lock.
func (s *Service) retryWrite(ctx context.Context, apiInvokerID string, fn func() error) error {
	if l, ok := s.store.(ContextLocker); ok && apiInvokerID != "" {
		unlock, err := l.LockContext(ctx, apiInvokerID)
		if err != nil {
			return Unavailable("the request deadline passed while waiting for a concurrent change")
		}
		defer unlock()
	}
	return s.retry(ctx, fn)
}

// retry runs fn again while it loses an optimistic-lock race, a bounded number of times, then
// answers 503 so the client retries later; state is unchanged in that case.
func (s *Service) retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if attempt >= s.cfg.MaxAttempts {
			return Unavailable("the security context is being changed concurrently; retry")
		}
		backoff := conflictBackoff(attempt, s.randomByte())
		select {
		case <-ctx.Done():
			return Unavailable("the request deadline passed while retrying a concurrent change")
		case <-time.After(backoff):
		}
	}
}

// conflictBackoff is retry's wait before attempt a+1: min(a², 8) ms times a random factor of 1
// to 4 (r), so writers racing on one context spread out.
func conflictBackoff(a int, r byte) time.Duration {
	return time.Duration(min(a*a, 8)) * time.Millisecond * time.Duration(1+r%4)
}

// MaxConflictWait is the longest retry waits in all over attempts attempts (Config.MaxAttempts,
// DefaultMaxAttempts unless set): what a request's deadline must leave room for.
func MaxConflictWait(attempts int) time.Duration {
	var d time.Duration
	for a := 1; a < attempts; a++ {
		d += conflictBackoff(a, 3)
	}
	return d
}
