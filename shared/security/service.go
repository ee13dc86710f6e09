package security

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	Logger     *slog.Logger
}

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

// --- Obtain_Security_Method -------------------------------------------------------------------

// CreateSecurityContext is PUT trustedInvokers/{apiInvokerId}.
func (s *Service) CreateSecurityContext(ctx context.Context, caller Caller, apiInvokerID string, req *capif.ServiceSecurity) (*capif.ServiceSecurity, error) {
	snap, err := s.loadAuthorized(ctx, ObtainSecurityMethod, caller, apiInvokerID, invokerQuery(apiInvokerID, req))
	if err != nil {
		return nil, err
	}
	if err := s.checkBody(req); err != nil {
		return nil, err
	}
	if snap.Context != nil {
		return nil, errContextExists(apiInvokerID)
	}
	sc, err := s.buildContext(apiInvokerID, req, snap, nil)
	if err != nil {
		return nil, err
	}
	if err := s.store.Create(ctx, sc); errors.Is(err, ErrExists) {
		return nil, errContextExists(apiInvokerID)
	} else if err != nil {
		return nil, err
	}
	s.testNotification(ctx, sc, req)
	return s.render(ctx, sc, view{all: true, authn: true, authz: true})
}

// UpdateSecurityContext is POST trustedInvokers/{apiInvokerId}/update: it replaces securityInfo
// and notificationDestination, keeping each PSK whose entry still addresses the same target.
func (s *Service) UpdateSecurityContext(ctx context.Context, caller Caller, apiInvokerID string, req *capif.ServiceSecurity) (*capif.ServiceSecurity, error) {
	var sc *SecurityContext
	lock := apiInvokerID
	if caller.ID != apiInvokerID {
		lock = "" // refused whatever the context holds: never wait on (or delay) its writers
	}
	err := s.retryWrite(ctx, lock, func() error {
		snap, err := s.loadAuthorized(ctx, ObtainSecurityMethod, caller, apiInvokerID, invokerQuery(apiInvokerID, req))
		if err != nil {
			return err
		}
		if err := s.checkBody(req); err != nil {
			return err
		}
		if snap.Context == nil {
			return notFound(CauseContextNotFound, fmt.Sprintf("no security context for API invoker %q; create it with PUT", apiInvokerID))
		}
		if sc, err = s.buildContext(apiInvokerID, req, snap, snap.Context); err != nil {
			return err
		}
		return s.replace(ctx, sc, nil)
	})
	if err != nil {
		return nil, err
	}
	s.testNotification(ctx, sc, req)
	return s.render(ctx, sc, view{all: true, authn: true, authz: true})
}

// invokerQuery is the read of an owner's create or update: its context and the registry entries
// that resolve its securityInfo (loadAuthorized drops them for anyone else).
func invokerQuery(apiInvokerID string, req *capif.ServiceSecurity) Query {
	q := Query{APIInvokerID: apiInvokerID}
	if req == nil || len(req.SecurityInfo) > MaxSecurityInfo {
		return q
	}
	aefs, ifcs := map[string]bool{}, map[string]bool{}
	for _, e := range req.SecurityInfo {
		switch {
		case e.AefID != "" && e.InterfaceDetails == nil:
			if !aefs[e.AefID] {
				aefs[e.AefID] = true
				q.AefIDs = append(q.AefIDs, e.AefID)
			}
		case e.InterfaceDetails != nil && e.AefID == "":
			if k := InterfaceKey(*e.InterfaceDetails); !ifcs[k] {
				ifcs[k] = true
				q.InterfaceKeys = append(q.InterfaceKeys, k)
			}
		}
	}
	return q
}

func (s *Service) checkBody(req *capif.ServiceSecurity) error {
	if req == nil {
		return invalid("a ServiceSecurity body is required")
	}
	params := ValidateServiceSecurity(req)
	if c, ok := s.notifier.(DestinationChecker); ok && req.NotificationDestination != "" && !slices.ContainsFunc(params, func(p capif.InvalidParam) bool { return p.Param == "/notificationDestination" }) {
		if err := c.CheckDestination(req.NotificationDestination); err != nil {
			params = append(params, capif.InvalidParam{Param: "/notificationDestination", Reason: err.Error()})
		}
	}
	if len(params) > 0 {
		return invalid("the ServiceSecurity is not valid", params...)
	}
	return nil
}

func errContextExists(apiInvokerID string) error {
	return forbidden(CauseContextExists, fmt.Sprintf("a security context for API invoker %q already exists; use POST …/trustedInvokers/%s/update to change it", apiInvokerID, apiInvokerID))
}

// buildContext resolves and selects every entry; prev (nil on create) supplies the PSKs to keep.
func (s *Service) buildContext(apiInvokerID string, req *capif.ServiceSecurity, snap *Snapshot, prev *SecurityContext) (*SecurityContext, error) {
	sc := &SecurityContext{
		APIInvokerID:            apiInvokerID,
		NotificationDestination: req.NotificationDestination,
		SupportedFeatures:       NegotiateFeatures(req.SupportedFeatures),
		Entries:                 make([]Entry, 0, len(req.SecurityInfo)),
	}
	keep := map[string]string{}
	if prev != nil {
		sc.Version = prev.Version
		for i := range prev.Entries {
			if e := &prev.Entries[i]; e.PSK != "" {
				keep[e.identityKey()] = e.PSK
			}
		}
	}
	var params []capif.InvalidParam
	seen := map[string]int{}
	for i, in := range req.SecurityInfo {
		e, bad := resolveEntry(i, in, snap)
		if bad != nil {
			params = append(params, *bad)
			continue
		}
		k := e.identityKey()
		if j, dup := seen[k]; dup {
			params = append(params, param(fmt.Sprintf("/securityInfo/%d", i), "addresses the same target as /securityInfo/%d", j))
			continue
		}
		seen[k] = i
		if e.SelSecurityMethod == capif.PSK && e.AuthenticationInfo == "" {
			if e.PSK = keep[k]; e.PSK == "" {
				e.PSK = s.randomString(32)
			}
		}
		sc.Entries = append(sc.Entries, e)
	}
	if len(params) > 0 {
		return nil, invalid("some securityInfo entries cannot be served", params...)
	}
	if b, _ := json.Marshal(sc); len(b) > MaxEncodedContext {
		return nil, &Error{Kind: KindTooLarge, Cause: CauseTooLarge, Detail: fmt.Sprintf("the security context would take %d bytes; at most %d are stored", len(b), MaxEncodedContext)}
	}
	return sc, nil
}

// testNotification sends the TS 29.122 test notification when Notification_test_event was
// negotiated and asked for.
func (s *Service) testNotification(ctx context.Context, sc *SecurityContext, req *capif.ServiceSecurity) {
	if req.RequestTestNotification == nil || !*req.RequestTestNotification || !HasFeature(sc.SupportedFeatures, FeatureNotificationTestEvent) {
		return
	}
	body := capif.TestNotification{Subscription: ResourceURI(s.cfg.APIRoot, sc.APIInvokerID)}
	if err := s.notifier.Notify(context.WithoutCancel(ctx), Delivery{ID: s.randomString(16), Destination: sc.NotificationDestination, Body: body}); err != nil {
		s.cfg.Logger.Warn("test notification not delivered", "apiInvokerId", sc.APIInvokerID, "destination", RedactURL(sc.NotificationDestination), "error", err.Error())
	}
}

// --- Obtain_API_Invoker_Info ------------------------------------------------------------------

// InvokerInfoQuery is what GET trustedInvokers/{apiInvokerId} asks to be included.
type InvokerInfoQuery struct {
	AuthenticationInfo bool
	AuthorizationInfo  bool
}

// GetInvokerInfo is GET trustedInvokers/{apiInvokerId} by an AEF: only the entries that concern
// the caller, with authenticationInfo / authorizationInfo only when asked for.
func (s *Service) GetInvokerInfo(ctx context.Context, caller Caller, apiInvokerID string, q InvokerInfoQuery) (*capif.ServiceSecurity, error) {
	snap, err := s.loadAuthorized(ctx, ObtainAPIInvokerInfo, caller, apiInvokerID, aefQuery(caller, apiInvokerID))
	if err != nil {
		return nil, err
	}
	if err := aefContextCheck(snap, caller.ID, apiInvokerID); err != nil {
		return nil, err
	}
	return s.render(ctx, snap.Context, view{aef: caller.ID, authn: q.AuthenticationInfo, authz: q.AuthorizationInfo})
}

// aefQuery is the read of an AEF route: the context, which the store may leave out (without
// decoding it) when it has no entry for the AEF, since the answer is then the same as for none.
func aefQuery(caller Caller, apiInvokerID string) Query {
	return Query{APIInvokerID: apiInvokerID, ForAEF: caller.ID}
}

// aefContextCheck answers 404 alike for a missing context and for one without an entry for the
// AEF, so that no AEF learns which invokers have a context.
func aefContextCheck(snap *Snapshot, aefID, apiInvokerID string) error {
	if snap.Context != nil && snap.Context.Concerns(aefID) {
		return nil
	}
	return notFound(CauseContextNotFound, fmt.Sprintf("no security context of API invoker %q for AEF %q", apiInvokerID, aefID))
}

// view selects what render shows.
type view struct {
	all          bool   // the owner's view: every entry
	aef          string // otherwise only the entries concerning this AEF
	authn, authz bool
}

func (s *Service) render(ctx context.Context, sc *SecurityContext, v view) (*capif.ServiceSecurity, error) {
	out := &capif.ServiceSecurity{
		NotificationDestination: sc.NotificationDestination,
		SupportedFeatures:       sc.SupportedFeatures,
		SecurityInfo:            []capif.SecurityInformation{},
	}
	for i := range sc.Entries {
		e := &sc.Entries[i]
		if !v.all && !e.concerns(v.aef) {
			continue
		}
		si := capif.SecurityInformation{
			AefID:               e.AefID,
			InterfaceDetails:    e.InterfaceDetails,
			APIID:               e.APIID,
			PrefSecurityMethods: e.PrefSecurityMethods,
			SelSecurityMethod:   e.SelSecurityMethod,
			AuthorizationFlow:   e.AuthorizationFlow,
			GrantType:           e.GrantType,
		}
		if v.authn {
			var err error
			if si.AuthenticationInfo, err = s.authenticationInfo(ctx, e); err != nil {
				return nil, err
			}
		}
		if v.authz {
			si.AuthorizationInfo = e.AuthorizationInfo
		}
		out.SecurityInfo = append(out.SecurityInfo, si)
	}
	return out, nil
}

// authenticationInfo is the invoker's own claim when it made one; otherwise the PSK of a PSK
// entry, or the CA that verifies invoker certificates for a PKI entry (added when read).
func (s *Service) authenticationInfo(ctx context.Context, e *Entry) (string, error) {
	switch {
	case e.AuthenticationInfo != "":
		return e.AuthenticationInfo, nil
	case e.SelSecurityMethod == capif.PSK:
		return e.PSK, nil
	case e.SelSecurityMethod == capif.PKI:
		return s.cfg.ClientCA(ctx)
	}
	return "", nil
}

// --- Revoke_Authorization ---------------------------------------------------------------------

// RevokeAll is DELETE trustedInvokers/{apiInvokerId}: it revokes every API of the calling AEF
// (only those: AEFs do not revoke each other), cause UNEXPECTED_REASON.
func (s *Service) RevokeAll(ctx context.Context, caller Caller, apiInvokerID string) error {
	return s.revoke(ctx, caller, apiInvokerID, nil)
}

// Revoke is POST trustedInvokers/{apiInvokerId}/delete with a SecurityNotification body.
func (s *Service) Revoke(ctx context.Context, caller Caller, apiInvokerID string, req *capif.SecurityNotification) error {
	if req == nil {
		if err := s.Authorize(ctx, RevokeAuthorization, caller, apiInvokerID); err != nil {
			return err
		}
		return invalid("a SecurityNotification body is required")
	}
	return s.revoke(ctx, caller, apiInvokerID, req)
}

// revoke removes the caller's targets (all of them, or those of req) from the context and owes
// the invoker one notification, in one write.
func (s *Service) revoke(ctx context.Context, caller Caller, apiInvokerID string, req *capif.SecurityNotification) error {
	var owed []Owed
	q := aefQuery(caller, apiInvokerID)
	q.AefIDs = []string{caller.ID}
	err := s.retryWrite(ctx, apiInvokerID, func() error {
		snap, err := s.loadAuthorized(ctx, RevokeAuthorization, caller, apiInvokerID, q)
		if err != nil {
			return err
		}
		cause := capif.UnexpectedReason
		var only []string // nil: every API of the caller
		if req != nil {
			if params := ValidateRevocation(req, apiInvokerID); len(params) > 0 {
				return invalid("the SecurityNotification is not valid", params...)
			}
			if req.AefID != "" && req.AefID != caller.ID {
				return forbidden(CauseRoleNotAllowed, fmt.Sprintf("an AEF may only revoke its own APIs, not those of %q", req.AefID))
			}
			cause, only = req.Cause, req.APIIDs
		}
		if err := aefContextCheck(snap, caller.ID, apiInvokerID); err != nil {
			return err
		}
		if only != nil {
			if err := checkRevocable(snap, caller.ID, only); err != nil {
				return err
			}
		}
		sc, removed := withoutTargets(snap.Context, func(t Target) bool {
			return t.AefID == caller.ID && (only == nil || slices.Contains(only, t.APIID))
		})
		o := s.owe(sc, caller.ID, removed, cause)
		if req != nil {
			o.Notification.AccessToken = req.AccessToken // Rel-19: passed on as sent
		}
		owed = []Owed{o}
		return s.replace(ctx, sc, owed)
	})
	if err != nil {
		return err
	}
	s.deliver(ctx, owed)
	return nil
}

// checkRevocable: every apiId must be published by the caller (else 403, nothing revoked) and
// present in the context at the caller (else 404).
func checkRevocable(snap *Snapshot, callerID string, apiIDs []string) error {
	cat := snap.AEFs[callerID]
	for _, id := range apiIDs {
		published := false
		if cat != nil { // nil: the caller publishes nothing (any more)
			_, published = cat.API(id)
		}
		if !published {
			return forbidden(CauseAPINotPublished, fmt.Sprintf("API %q is not published by AEF %q", id, callerID))
		}
	}
	present := map[string]bool{}
	for _, e := range snap.Context.Entries {
		for _, t := range e.Targets {
			if t.AefID == callerID {
				present[t.APIID] = true
			}
		}
	}
	for _, id := range apiIDs {
		if !present[id] {
			return notFound(CauseAPINotInContext, fmt.Sprintf("API %q of AEF %q is not in the security context", id, callerID))
		}
	}
	return nil
}

// withoutTargets returns a copy of sc without the matching targets, dropping entries left empty,
// and the apiIds removed (sorted, unique).
func withoutTargets(sc *SecurityContext, drop func(Target) bool) (*SecurityContext, []string) {
	out := *sc
	out.Entries = make([]Entry, 0, len(sc.Entries))
	var removed []string
	for _, e := range sc.Entries {
		kept := make([]Target, 0, len(e.Targets))
		for _, t := range e.Targets {
			if drop(t) {
				if !slices.Contains(removed, t.APIID) {
					removed = append(removed, t.APIID)
				}
				continue
			}
			kept = append(kept, t)
		}
		if len(kept) > 0 {
			e.Targets = kept
			out.Entries = append(out.Entries, e)
		}
	}
	slices.Sort(removed)
	return &out, removed
}

// --- Obtain_Authorization ---------------------------------------------------------------------

// ObtainAuthorization is POST securities/{securityId}/token (OAuth 2.0 client credentials). req
// carries the client credentials however the client sent them (form or HTTP Basic): the edge
// merged them.
func (s *Service) ObtainAuthorization(ctx context.Context, caller Caller, securityID string, req capif.AccessTokenReq) (*capif.AccessTokenRsp, error) {
	snap, err := s.loadAuthorized(ctx, ObtainAuthorization, caller, securityID, Query{APIInvokerID: caller.ID})
	if err != nil {
		return nil, err
	}
	switch {
	case req.ClientID != caller.ID:
		return nil, oauth(KindUnauthenticated, capif.InvalidClient, "client_id does not match the client certificate")
	case req.GrantType != "client_credentials":
		return nil, oauth(KindInvalid, capif.UnsupportedGrantType, "only grant_type=client_credentials is supported")
	case len(snap.Caller.SecretHash) > 0 && subtle.ConstantTimeCompare(HashSecret(req.ClientSecret), snap.Caller.SecretHash) != 1:
		return nil, oauth(KindUnauthenticated, capif.InvalidClient, "client_secret is missing or wrong")
	}
	allowed := capif.Scope{} // what the context allows: its OAUTH entries' targets
	if snap.Context != nil {
		for _, e := range snap.Context.Entries {
			if e.SelSecurityMethod != capif.OAUTH {
				continue
			}
			for _, t := range e.Targets {
				if !allowed.Has(t.AefID, t.APIName) {
					allowed[t.AefID] = append(allowed[t.AefID], t.APIName)
				}
			}
		}
	}
	if len(allowed) == 0 {
		return nil, oauth(KindInvalid, capif.UnauthorizedClient, "the API invoker has no security context entry with the OAUTH method")
	}
	granted := allowed
	if req.Scope != "" {
		want, err := capif.ParseScope(req.Scope)
		if err != nil {
			return nil, oauth(KindInvalid, capif.InvalidScope, err.Error())
		}
		if err := within(want, allowed); err != nil {
			return nil, oauth(KindInvalid, capif.InvalidScope, err.Error())
		}
		granted = want
	}
	now := s.clock.Now()
	claims := capif.TokenClaims{
		Issuer:   s.cfg.Issuer,
		Subject:  caller.ID,
		ClientID: caller.ID,
		Audience: granted.AEFs(),
		Scope:    granted.String(),
		IssuedAt: now.Unix(),
		Expiry:   now.Add(s.cfg.TokenTTL).Unix(),
		ID:       s.randomString(16),
	}
	if caller.CertSHA256 != "" {
		// RFC 8705 §3: the token is only usable with the certificate that obtained it.
		claims.Confirmation = &capif.Confirmation{X5tS256: caller.CertSHA256}
	}
	token, err := s.signer.Sign(ctx, claims)
	if err != nil {
		return nil, err
	}
	return &capif.AccessTokenRsp{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(s.cfg.TokenTTL / time.Second), Scope: claims.Scope}, nil
}

// JWKS returns the keys that verify every token this CCF issued and that has not yet expired.
func (s *Service) JWKS(ctx context.Context) (capif.JWKSet, error) {
	return s.signer.JWKS(ctx)
}

// Issuer is the iss claim of every token this CCF issues (the issuer of its RFC 8414 metadata).
func (s *Service) Issuer() string {
	return s.cfg.Issuer
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
	q.InterfaceKeys = slices.DeleteFunc(q.InterfaceKeys, func(k string) bool { return !utf8.ValidString(k) || len(k) > 2*MaxIDLength })
	if q.CallerID == "" && q.APIInvokerID == "" && len(q.AefIDs) == 0 && len(q.InterfaceKeys) == 0 {
		return &Snapshot{}, nil
	}
	return s.store.Load(ctx, q)
}

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
