package security

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/capifcore/capif-security/shared/capif"
)

// Config holds the operator's settings of the domain.
type Config struct {
	Issuer   string        // the iss claim: an https URL, by default {apiRoot}
	TokenTTL time.Duration // access token lifetime (expires_in)
	APIRoot  string        // public {apiRoot}, for resource URIs
	// ClientCA returns the PEM of the CAs that verify invoker certificates: the
	// authenticationInfo of a PKI entry. It may read it lazily (a Lambda reads its truststore
	// once); nil means none.
	ClientCA func(context.Context) (string, error)
	// MethodPriority is the operator's ranking of security methods (TS 33.122 §6.3): an entry
	// gets the first of them that the invoker prefers and the AEF supports, else the first
	// method the invoker prefers that the list leaves out. Empty: the invoker's order.
	MethodPriority []capif.SecurityMethod
	// MaxAttempts bounds the attempts of a conditional write before answering 503 (default
	// DefaultMaxAttempts).
	// A conflict means another writer committed, so N writers racing on one context need at
	// most N attempts each: the default absorbs any realistic burst without a 503.
	MaxAttempts int
	// Delivery of owed notifications: retries back off from RetryBase doubling to RetryCap
	// (full jitter) for RetryWindow, then the record is dead-lettered; a worker holds a record
	// for ClaimLease per attempt (more than a delivery can take); at most DeliveryConcurrency
	// attempts run at once. Zero values take the Default… constants.
	RetryBase, RetryCap, RetryWindow, ClaimLease time.Duration
	DeliveryConcurrency                          int
	// OnDelivery, when set, learns the outcome of every delivery attempt, with the context of
	// the request or run that made it (the edge counts them as metrics).
	OnDelivery func(ctx context.Context, outcome DeliveryOutcome)
	// CCFName is the name in the CCF's own client certificate (CAPIF_CCF_NAME, default
	// DefaultCCFName): no registry principal may take it, nor DefaultCCFName.
	CCFName string
	// AEFPush says what a revocation owes the AEFs that have an aefSecurityRoot.
	AEFPush AEFPush
	Logger  *slog.Logger
}

// DefaultCCFName is Config.CCFName when it is not set, and always reserved.
const DefaultCCFName = "ccf"

// AEFPush is what becomes of the Revoke_Authorization pushes a revocation owes AEFs.
type AEFPush uint8

const (
	// AEFPushInline writes them with the change and makes the first attempt before answering,
	// as for the invoker's notification.
	AEFPushInline AEFPush = iota
	// AEFPushQueued writes them for the worker, which makes every attempt: this process has no
	// CCF client certificate to present (capif-admin without the CCF key).
	AEFPushQueued
	// AEFPushOff writes none: the deployment has no CCF client certificate at all.
	AEFPushOff
)

// DefaultMaxAttempts is Config.MaxAttempts when it is not set.
const DefaultMaxAttempts = 32

// DefaultTokenTTL is Config.TokenTTL when it is not set: ten minutes, the CAPIF_TOKEN_TTL default.
const DefaultTokenTTL = 10 * time.Minute

// Service implements the six operations of the CAPIF_Security_API on the ports.
type Service struct {
	store    Store
	registry Registry
	signer   Signer
	notifier Notifier
	clock    Clock
	cfg      Config
	random   io.Reader
}

// New wires a Service. registry may be nil where no admin operation is used.
func New(store Store, registry Registry, signer Signer, notifier Notifier, clock Clock, cfg Config) *Service {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.ClientCA == nil {
		cfg.ClientCA = func(context.Context) (string, error) { return "", nil }
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.RetryBase, DefaultRetryBase}, {&cfg.RetryCap, DefaultRetryCap}, {&cfg.RetryWindow, DefaultRetryWindow}, {&cfg.ClaimLease, DefaultClaimLease}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.DeliveryConcurrency <= 0 {
		cfg.DeliveryConcurrency = DefaultDeliveryConcurrency
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CCFName == "" {
		cfg.CCFName = DefaultCCFName
	}
	if clock == nil {
		clock = SystemClock{}
	}
	return &Service{store: store, registry: registry, signer: signer, notifier: notifier, clock: clock, cfg: cfg, random: rand.Reader}
}

// ResourceURI is the absolute URI of an invoker's security context (Location header, test
// notification subscription).
func ResourceURI(apiRoot, apiInvokerID string) string {
	return apiRoot + "/capif-security/v1/trustedInvokers/" + url.PathEscape(apiInvokerID)
}

// --- helpers ----------------------------------------------------------------------------------

// load reads through the store after dropping ids that no registry or context can hold (empty,
// too long, not UTF-8), so adapters never see a key their back end would reject: such an id is
// simply unknown.
func (s *Service) load(ctx context.Context, q Query) (*Snapshot, error) {
	keep := func(id string) bool { return id != "" && len(id) <= MaxIDLength && utf8.ValidString(id) }
	if !keep(q.CallerID) {
		q.CallerID = ""
	}
	if !keep(q.APIInvokerID) {
		q.APIInvokerID = ""
	}
	q.AefIDs = slices.DeleteFunc(q.AefIDs, func(id string) bool { return !keep(id) })
	q.Principals = slices.DeleteFunc(q.Principals, func(id string) bool { return !keep(id) })
	q.InterfaceKeys = slices.DeleteFunc(q.InterfaceKeys, func(k string) bool { return !utf8.ValidString(k) || len(k) > 2*MaxIDLength })
	if len(q.CertKey) > MaxIDLength {
		q.CertKey = "" // no certificate key is this long: nothing can be revoked under it
	}
	if q.CallerID == "" && q.APIInvokerID == "" && len(q.AefIDs) == 0 && len(q.InterfaceKeys) == 0 && len(q.Principals) == 0 && q.CertKey == "" {
		return &Snapshot{}, nil
	}
	return s.store.Load(ctx, q)
}

func (s *Service) randomString(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.random, b); err != nil {
		panic("security: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Service) randomByte() byte {
	var b [1]byte
	_, _ = io.ReadFull(s.random, b[:])
	return b[0]
}

// RedactURL keeps only scheme and host of a destination for logs and operators: paths and
// queries may carry the invoker's secrets.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Scheme + "://" + u.Host
}
