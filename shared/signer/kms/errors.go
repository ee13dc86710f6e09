package kms

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
)

// classify names the failed call and wraps security.ErrUnavailable around failures worth a 503
// (awsretry.Transient: the client may retry); every other error stays plain and becomes a 500.
// A failure after the caller's own context ended stays plain: the caller gave up, KMS did not.
func classify(ctx context.Context, op, keyID string, err error) error {
	if ctx.Err() == nil && awsretry.Transient(err) {
		return fmt.Errorf("kms %s %s: %w: %w", op, keyID, security.ErrUnavailable, err)
	}
	if cause, ok := awsretry.Outage(err); ok && ctx.Err() == nil {
		// A broken deployment (key missing or disabled, credentials, permissions): 503, and
		// the operator's ERROR line names the key and the cause.
		slog.Default().Error("dependency unavailable", "dependency", "KMS", "op", op, "key", keyID, "cause", cause, "error", err.Error())
		return fmt.Errorf("kms %s %s: %w: %s: %w", op, keyID, security.ErrUnavailable, cause, err)
	}
	return fmt.Errorf("kms %s %s: %w", op, keyID, err)
}
