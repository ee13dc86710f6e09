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
	// ContextsWithAPI lists the ids of the contexts that cover apiID at any AEF (admin use).
	ContextsWithAPI(ctx context.Context, apiID string) ([]string, error)
	// Outbox is the delivery side of the owed notifications that Replace (and a registry
	// change that deletes a context) recorded.
	Outbox
}

// Registry is the write side of what the CCF knows of onboarded invokers, AEFs and published
// service APIs (the read side comes through Store.Load). It has one method in bbolt's shape: the
// registry rules (in this package) run inside Update, so every back end applies them in the same
// order and only supplies item access.
type Registry interface {
	// Update runs fn on one registry change and commits what fn wrote when fn returns nil; when
	// fn fails, nothing is written and Update returns fn's error. Within fn, reads see fn's own
	// writes. A back end that finds a concurrent change in the way runs fn again on fresh reads
	// (bounded, then ErrUnavailable), so fn must have no effect outside tx.
	Update(ctx context.Context, fn func(tx RegistryTx) error) error
	// Records lists, in one consistent read where the back end allows it, the records a registry
	// document describes: every principal and every published service API, as stored. Other
	// registry items (catalogues, the interface index) are derived from those and not listed.
	// For capif-admin's list and export: never on a request path.
	Records(ctx context.Context) (RegistryRecords, error)
}

// RegistryRecords are what Registry.Records lists, each ordered by id.
type RegistryRecords struct {
	Principals []Principal
	APIs       []capif.ServiceAPIDescription
	// RevokedCertificates are the revoked client certificates still kept (read-only for the
	// operator: no document carries them).
	RevokedCertificates []RevokedCertificate
}

// RegistryTx is the item-level access inside one Registry.Update. Getters return ErrNotFound for
// a missing item.
type RegistryTx interface {
	// Prefetch is a hint that the records named by keys will be read soon. A back end with
	// round trips reads them together; the getters answer the same with or without it. It is a method (not
	// an argument of Update) because what a rule reads next can depend on what it read first.
	Prefetch(keys []RecordKey) error
	GetPrincipal(id string) (*Principal, error)
	PutPrincipal(p *Principal) error
	DeletePrincipal(id string) error
	GetAEF(aefID string) (*AEF, error)
	PutAEF(a *AEF) error // an AEF with no APIs deletes the catalogue
	GetAPI(apiID string) (*capif.ServiceAPIDescription, error)
	PutAPI(d *capif.ServiceAPIDescription) error
	DeleteAPI(apiID string) error
	GetInterface(key string) ([]PublishedAPI, error)
	PutInterface(key string, apis []PublishedAPI) error // an empty list deletes the entry
	// DeleteContext deletes the invoker's security context, if it has one, in the same change,
	// together with the notifications that owe(context) returns (written to the outbox like
	// Store.Replace's, already claimed for the inline attempt); owe may read through the same
	// RegistryTx, and its error fails the change. A context written concurrently makes the
	// change lose, so it is re-run.
	DeleteContext(apiInvokerID string, owe func(*SecurityContext) ([]Owed, error)) error
	// PutRevokedCertificate records a revoked client certificate (by its Key), kept
	// until its Until; stores may drop it after.
	PutRevokedCertificate(c *RevokedCertificate) error
	// Owe writes notifications to the outbox in the same change, as DeleteContext's owe does.
	Owe(owed []Owed) error
}

// RecordKind names a kind of registry record in a RecordKey.
type RecordKind uint8

// The registry record kinds.
const (
	RecordPrincipal RecordKind = iota + 1 // by id: invokers and AEFs share one id space
	RecordAEF                             // AEF catalogue, by aefId
	RecordAPI                             // published service API, by apiId
	RecordInterface                       // interface index entry, by InterfaceKey
)

// RecordKey names one registry record, for RegistryTx.Prefetch.
type RecordKey struct {
	Kind RecordKind
	ID   string
}

// Signer signs access tokens (ES256, kid header) and publishes the keys that verify them.
type Signer interface {
	Sign(ctx context.Context, claims capif.TokenClaims) (string, error)
	JWKS(ctx context.Context) (capif.JWKSet, error)
}

// Notifier delivers a JSON body to an invoker's notificationDestination or an AEF's
// revoke-authorization. Implementations guard against SSRF and bound the time they take; to an
// AEF they present the CCF's client certificate and verify the AEF's. Errors classify the
// failure (each is retried unless it says otherwise):
//   - ErrUndeliverable: the destination can never accept it (refused by the guard, 410 Gone,
//     an AEF's 404): dead at once;
//   - ErrNotAccepted: the AEF refused our request or our certificate (the fault is likely ours);
//   - ErrNoListener: nothing listens at the destination (connection refused).
type Notifier interface {
	Notify(ctx context.Context, d Delivery) error
}

// Delivery is one attempt at a notification.
type Delivery struct {
	// ID is the same on every attempt of one notification, so that the receiver can discard
	// repeats (sent as the webhook-id header).
	ID          string
	Kind        OwedKind // who receives it: how to connect and how to read the answer
	Destination string
	Body        any
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
	Principals    []string // registry principals besides the caller (admin revocations: the AEFs' roots)
	// CertKey is the caller's capif.CertificateKey: its revocation item, if any, is read in the
	// same request.
	CertKey string
}

// Snapshot is what Store.Load found.
type Snapshot struct {
	Caller     *Principal                // nil: the caller is not in the registry
	Context    *SecurityContext          // nil: no security context
	AEFs       map[string]*AEF           // by aefId; absent: unknown AEF
	Interfaces map[string][]PublishedAPI // by InterfaceKey; absent: no such published interface
	Principals map[string]*Principal     // Query.Principals found, by id
	// RevokedCert is the revocation of Query.CertKey's certificate; nil: not revoked.
	RevokedCert *RevokedCertificate
}
