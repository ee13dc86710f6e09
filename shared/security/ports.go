package security

import (
	"context"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// Store keeps security contexts and answers the combined reads of the operations. Every read is
// strongly consistent and every write conditional, so concurrent requests never lose an update.
type Store interface {
	// Load reads, as one consistent request where the back end allows it, everything an
	// operation needs: the caller's registry record, the security context of q.APIInvokerID and
	// the registry catalogue entries named in q. Missing items are simply absent from the result.
	Load(ctx context.Context, q Query) (*Snapshot, error)
	// Create stores a new context with Version 1. ErrExists when a context already exists.
	Create(ctx context.Context, sc *SecurityContext) error
	// Replace stores sc when the stored version still equals sc.Version, bumping it; ErrConflict
	// when another writer won, ErrNotFound when the context is gone. A context with no entries is
	// deleted instead. Every owed notification is recorded in the same atomic write (outbox), so a
	// revocation never commits without the notification it owes.
	Replace(ctx context.Context, sc *SecurityContext, owed []Owed) error
	// Delivered removes an outbox record once its notification reached the invoker.
	Delivered(ctx context.Context, owedID string) error
	// ContextsWithAPI lists the ids of the contexts that cover apiID at any AEF (admin use).
	ContextsWithAPI(ctx context.Context, apiID string) ([]string, error)
}

// Registry is the write side of what the CCF knows of onboarded invokers, AEFs and published
// service APIs (the read side comes through Store.Load). Used by the admin command and the local
// runner's import.
type Registry interface {
	// Import upserts every record of doc; doc must already be valid (RegistryDoc.Validate).
	// Invokers and AEFs share one id space: an id already held by the other role is refused
	// with ErrRoleClash and nothing of doc is written.
	Import(ctx context.Context, doc RegistryDoc) error
	// RemoveInvoker deletes the invoker and its security context; ErrNotFound if unknown.
	RemoveInvoker(ctx context.Context, apiInvokerID string) error
	// RemoveAEF deletes the AEF record; ErrNotFound if unknown.
	RemoveAEF(ctx context.Context, aefID string) error
	// RemoveAPI deletes the published API from the catalogue; ErrNotFound if unknown. Revoking it
	// from the contexts is Service.RemoveAPI's job.
	RemoveAPI(ctx context.Context, apiID string) error
}

// Signer signs access tokens (ES256, kid header) and publishes the keys that verify them.
type Signer interface {
	Sign(ctx context.Context, claims TokenClaims) (string, error)
	JWKS(ctx context.Context) (JWKSet, error)
}

// Notifier delivers a JSON body to an invoker's notificationDestination. Implementations guard
// against SSRF and bound the time they take.
type Notifier interface {
	Notify(ctx context.Context, destination string, body any) error
}

// DestinationChecker is an optional Notifier capability: refuse, when it is set, a
// notificationDestination that delivery would certainly refuse (an IP literal in a forbidden
// range), so the invoker learns it from a 400 instead of from missing notifications.
type DestinationChecker interface {
	CheckDestination(destination string) error
}

// ContextLocker is an optional Store capability of a store that lives in one process: it
// serializes the read-modify-write cycles of one context, so that its writers never lose an
// optimistic-lock race (a store shared between processes relies on the conditional writes and
// the bounded retries alone). LockContext waits until ctx ends at most; unlock is idempotent.
type ContextLocker interface {
	LockContext(ctx context.Context, apiInvokerID string) (unlock func(), err error)
}

// Clock is the time source; tests pin it.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Query names what one operation needs to read.
type Query struct {
	CallerID     string // the certificate identity: a registry id or nothing known
	APIInvokerID string // the context to read; "" for none
	// ForAEF, when set, lets the store leave out a context that has no entry concerning this
	// aefId, deciding so without decoding the context (an AEF's answer must not take longer
	// for a context it cannot see than for none). Stores may also return it: the domain checks.
	ForAEF        string
	AefIDs        []string // AEF catalogues needed to resolve securityInfo entries
	InterfaceKeys []string // interface index entries needed to resolve interfaceDetails entries
}

// Snapshot is what Store.Load found.
type Snapshot struct {
	Caller     *Principal                // nil: the caller is not in the registry
	Context    *SecurityContext          // nil: no security context
	AEFs       map[string]*AEF           // by aefId; absent: unknown AEF
	Interfaces map[string][]PublishedAPI // by InterfaceKey; absent: no such published interface
}

// Owed is a notification recorded with the change that owes it (transactional outbox).
type Owed struct {
	ID           string
	APIInvokerID string
	Destination  string
	Notification capif.SecurityNotification
}
