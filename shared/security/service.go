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
	Logger      *slog.Logger
}

// DefaultMaxAttempts is Config.MaxAttempts when it is not set.
const DefaultMaxAttempts = 32

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
		cfg.TokenTTL = 600 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.ClientCA == nil {
		cfg.ClientCA = func(context.Context) (string, error) { return "", nil }
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

// Result is a ServiceSecurity answer.
type Result struct {
	Body *capif.ServiceSecurity
}

// --- Obtain_Security_Method -------------------------------------------------------------------

// CreateSecurityContext is PUT trustedInvokers/{apiInvokerId}. bodyErr is the decoding failure of
// the request body, if any: it is reported only after the caller is known to be allowed.
func (s *Service) CreateSecurityContext(ctx context.Context, callerID, apiInvokerID string, req *capif.ServiceSecurity, bodyErr error) (*capif.ServiceSecurity, error) {
	snap, err := s.load(ctx, s.invokerQuery(callerID, apiInvokerID, req, bodyErr))
	if err != nil {
		return nil, err
	}
	if err := s.checkInvoker(snap, callerID, apiInvokerID); err != nil {
		return nil, err
	}
	if err := s.checkBody(req, bodyErr); err != nil {
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
func (s *Service) UpdateSecurityContext(ctx context.Context, callerID, apiInvokerID string, req *capif.ServiceSecurity, bodyErr error) (*capif.ServiceSecurity, error) {
	var sc *SecurityContext
	err := s.retry(ctx, func() error {
		snap, err := s.load(ctx, s.invokerQuery(callerID, apiInvokerID, req, bodyErr))
		if err != nil {
			return err
		}
		if err := s.checkInvoker(snap, callerID, apiInvokerID); err != nil {
			return err
		}
		if err := s.checkBody(req, bodyErr); err != nil {
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

func (s *Service) invokerQuery(callerID, apiInvokerID string, req *capif.ServiceSecurity, bodyErr error) Query {
	q := Query{CallerID: callerID, APIInvokerID: apiInvokerID}
	// Only the owner's request gets its registry lookups; anyone else is refused anyway.
	if req == nil || bodyErr != nil || callerID != apiInvokerID || len(req.SecurityInfo) > MaxSecurityInfo {
		return q
	}
	for _, e := range req.SecurityInfo {
		switch {
		case e.AefID != "" && e.InterfaceDetails == nil:
			if !slices.Contains(q.AefIDs, e.AefID) {
				q.AefIDs = append(q.AefIDs, e.AefID)
			}
		case e.InterfaceDetails != nil && e.AefID == "":
			if k := InterfaceKey(*e.InterfaceDetails); !slices.Contains(q.InterfaceKeys, k) {
				q.InterfaceKeys = append(q.InterfaceKeys, k)
			}
		}
	}
	return q
}

// checkInvoker applies the identity rules of the invoker routes: unknown caller 401, an AEF 403,
// another invoker's id 403 (whether or not it exists).
func (s *Service) checkInvoker(snap *Snapshot, callerID, apiInvokerID string) error {
	switch {
	case snap.Caller == nil:
		return unauthenticated("the client certificate does not identify a registered API invoker or AEF")
	case snap.Caller.Role != RoleInvoker:
		return forbidden(CauseRoleNotAllowed, "only an API invoker may use this operation")
	case callerID != apiInvokerID:
		return forbidden(CauseNotOwner, "an API invoker may only manage its own security context")
	}
	return nil
}

// checkAEF applies the identity rules of the AEF routes.
func checkAEF(snap *Snapshot) error {
	switch {
	case snap.Caller == nil:
		return unauthenticated("the client certificate does not identify a registered API invoker or AEF")
	case snap.Caller.Role != RoleAEF:
		return forbidden(CauseRoleNotAllowed, "only an API exposing function may use this operation")
	}
	return nil
}

func (s *Service) checkBody(req *capif.ServiceSecurity, bodyErr error) error {
	if bodyErr != nil {
		return bodyErr
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
	if err := s.notifier.Notify(context.WithoutCancel(ctx), sc.NotificationDestination, body); err != nil {
		s.cfg.Logger.Warn("test notification not delivered", "apiInvokerId", sc.APIInvokerID, "destination", redactURL(sc.NotificationDestination), "error", err.Error())
	}
}

// --- Obtain_API_Invoker_Info ------------------------------------------------------------------

// GetInvokerInfo is GET trustedInvokers/{apiInvokerId} by an AEF: only the entries that concern
// the caller, with authenticationInfo / authorizationInfo only when asked for.
func (s *Service) GetInvokerInfo(ctx context.Context, callerID, apiInvokerID string, authn, authz bool, queryErr error) (*capif.ServiceSecurity, error) {
	snap, err := s.load(ctx, Query{CallerID: callerID, APIInvokerID: apiInvokerID})
	if err != nil {
		return nil, err
	}
	if err := checkAEF(snap); err != nil {
		return nil, err
	}
	if queryErr != nil {
		return nil, queryErr
	}
	if err := aefContextCheck(snap, callerID, apiInvokerID); err != nil {
		return nil, err
	}
	return s.render(ctx, snap.Context, view{aef: callerID, authn: authn, authz: authz})
}

func aefContextCheck(snap *Snapshot, callerID, apiInvokerID string) error {
	if snap.Context == nil {
		return notFound(CauseContextNotFound, fmt.Sprintf("no security context for API invoker %q", apiInvokerID))
	}
	for i := range snap.Context.Entries {
		if snap.Context.Entries[i].concerns(callerID) {
			return nil
		}
	}
	return forbidden(CauseNoEntriesForAEF, fmt.Sprintf("the security context of %q has no entry for AEF %q", apiInvokerID, callerID))
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
func (s *Service) RevokeAll(ctx context.Context, callerID, apiInvokerID string) error {
	return s.revoke(ctx, callerID, apiInvokerID, nil, nil)
}

// Revoke is POST trustedInvokers/{apiInvokerId}/delete with a SecurityNotification body.
func (s *Service) Revoke(ctx context.Context, callerID, apiInvokerID string, req *capif.SecurityNotification, bodyErr error) error {
	if req == nil && bodyErr == nil {
		bodyErr = BadBody(KindInvalid, "a SecurityNotification body is required")
	}
	return s.revoke(ctx, callerID, apiInvokerID, req, bodyErr)
}

func (s *Service) revoke(ctx context.Context, callerID, apiInvokerID string, req *capif.SecurityNotification, bodyErr error) error {
	var owed []Owed
	err := s.retry(ctx, func() error {
		snap, err := s.load(ctx, Query{CallerID: callerID, APIInvokerID: apiInvokerID, AefIDs: []string{callerID}})
		if err != nil {
			return err
		}
		if err := checkAEF(snap); err != nil {
			return err
		}
		cause := capif.UnexpectedReason
		var only []string // nil: every API of the caller
		if req != nil || bodyErr != nil {
			if bodyErr != nil {
				return bodyErr
			}
			if params := ValidateRevocation(req, apiInvokerID); len(params) > 0 {
				return invalid("the SecurityNotification is not valid", params...)
			}
			if req.AefID != "" && req.AefID != callerID {
				return forbidden(CauseRoleNotAllowed, fmt.Sprintf("an AEF may only revoke its own APIs, not those of %q", req.AefID))
			}
			cause, only = req.Cause, req.APIIDs
		}
		if err := aefContextCheck(snap, callerID, apiInvokerID); err != nil {
			return err
		}
		if only != nil {
			if err := checkRevocable(snap, callerID, only); err != nil {
				return err
			}
		}
		sc, removed := withoutTargets(snap.Context, func(t Target) bool {
			return t.AefID == callerID && (only == nil || slices.Contains(only, t.APIID))
		})
		owed = []Owed{s.owe(sc, callerID, removed, cause)}
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
	for _, id := range apiIDs {
		found := slices.ContainsFunc(snap.Context.Entries, func(e Entry) bool {
			return slices.ContainsFunc(e.Targets, func(t Target) bool { return t.AefID == callerID && t.APIID == id })
		})
		if !found {
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

func (s *Service) owe(sc *SecurityContext, aefID string, apiIDs []string, cause capif.Cause) Owed {
	return Owed{
		ID:           s.randomString(16),
		APIInvokerID: sc.APIInvokerID,
		Destination:  sc.NotificationDestination,
		Notification: capif.SecurityNotification{APIInvokerID: sc.APIInvokerID, AefID: aefID, APIIDs: apiIDs, Cause: cause},
	}
}

// deliver posts owed notifications after the change committed and before the handler returns
// (a Lambda freezes once it returns). A failure is logged; the outbox record stays for the
// retrying delivery.
func (s *Service) deliver(ctx context.Context, owed []Owed) {
	ctx = context.WithoutCancel(ctx)
	for _, o := range owed {
		if err := s.notifier.Notify(ctx, o.Destination, o.Notification); err != nil {
			s.cfg.Logger.Warn("revocation notification not delivered", "apiInvokerId", o.APIInvokerID, "aefId", o.Notification.AefID, "destination", redactURL(o.Destination), "error", err.Error())
			continue
		}
		if err := s.store.Delivered(ctx, o.ID); err != nil {
			s.cfg.Logger.Warn("outbox record not cleared", "apiInvokerId", o.APIInvokerID, "error", err.Error())
		}
	}
}

// --- Obtain_Authorization ---------------------------------------------------------------------

// ObtainAuthorization is POST securities/{securityId}/token (OAuth 2.0 client credentials).
// reqErr is the form decoding failure, reported after the identity checks.
func (s *Service) ObtainAuthorization(ctx context.Context, callerID, securityID string, req capif.AccessTokenReq, reqErr error) (*capif.AccessTokenRsp, error) {
	snap, err := s.load(ctx, Query{CallerID: callerID, APIInvokerID: callerID})
	if err != nil {
		return nil, err
	}
	switch {
	case snap.Caller == nil:
		return nil, oauth(KindUnauthenticated, capif.InvalidClient, "the client certificate does not identify a registered API invoker")
	case snap.Caller.Role != RoleInvoker:
		return nil, forbidden(CauseRoleNotAllowed, "only an API invoker may obtain an access token")
	case securityID != callerID:
		return nil, forbidden(CauseNotOwner, "securityId must be the calling API invoker's id")
	case reqErr != nil:
		return nil, reqErr
	case req.ClientID != callerID:
		return nil, oauth(KindUnauthenticated, capif.InvalidClient, "client_id does not match the client certificate")
	case req.GrantType != "client_credentials":
		return nil, oauth(KindInvalid, capif.UnsupportedGrantType, "only grant_type=client_credentials is supported")
	case len(snap.Caller.SecretHash) > 0 && subtle.ConstantTimeCompare(HashSecret(req.ClientSecret), snap.Caller.SecretHash) != 1:
		return nil, oauth(KindUnauthenticated, capif.InvalidClient, "client_secret is missing or wrong")
	}
	allowed := Scope{}
	if snap.Context != nil {
		for _, e := range snap.Context.Entries {
			if e.SelSecurityMethod == capif.OAUTH {
				for _, t := range e.Targets {
					allowed.add(t.AefID, t.APIName)
				}
			}
		}
	}
	if len(allowed) == 0 {
		return nil, oauth(KindInvalid, capif.UnauthorizedClient, "the API invoker has no security context entry with the OAUTH method")
	}
	granted := allowed
	if req.Scope != "" {
		want, err := ParseScope(req.Scope)
		if err != nil {
			return nil, oauth(KindInvalid, capif.InvalidScope, err.Error())
		}
		if err := want.within(allowed); err != nil {
			return nil, oauth(KindInvalid, capif.InvalidScope, err.Error())
		}
		granted = want
	}
	now := s.clock.Now()
	claims := TokenClaims{
		Issuer:   s.cfg.Issuer,
		Subject:  callerID,
		ClientID: callerID,
		Audience: granted.AEFs(),
		Scope:    granted.String(),
		IssuedAt: now.Unix(),
		Expiry:   now.Add(s.cfg.TokenTTL).Unix(),
		ID:       s.randomString(16),
	}
	token, err := s.signer.Sign(ctx, claims)
	if err != nil {
		return nil, err
	}
	return &capif.AccessTokenRsp{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(s.cfg.TokenTTL / time.Second), Scope: claims.Scope}, nil
}

// within names the first requested (aefId, apiName) outside allowed.
func (sc Scope) within(allowed Scope) error {
	for _, aef := range sc.AEFs() {
		names, ok := allowed[aef]
		if !ok {
			return fmt.Errorf("AEF %q is not authorized for OAUTH in the API invoker's security context", aef)
		}
		for _, n := range sc[aef] {
			if !slices.Contains(names, n) {
				return fmt.Errorf("API %q of AEF %q is not authorized for OAUTH in the API invoker's security context", n, aef)
			}
		}
	}
	return nil
}

// JWKS returns the keys that verify every token this CCF issued and that has not yet expired.
func (s *Service) JWKS(ctx context.Context) (JWKSet, error) {
	return s.signer.JWKS(ctx)
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
		backoff := time.Duration(min(attempt*attempt, 8)) * time.Millisecond * time.Duration(1+s.randomByte()%4)
		select {
		case <-ctx.Done():
			return Unavailable("the request deadline passed while retrying a concurrent change")
		case <-time.After(backoff):
		}
	}
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

// redactURL keeps only scheme and host of a destination for logs: paths and queries may carry
// the invoker's secrets.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Scheme + "://" + u.Host
}
