// Package securitytest holds hand-written fakes of the security ports for the tests of the
// packages that drive a security.Service, as net/http/httptest sits beside net/http.
//
//   - Clock: a pinned clock.
//   - Signer: records the claims it signs; Err makes it fail.
//   - Notifier: records what it would deliver; Err makes delivery fail, OnSend observes it.
//   - Store: wraps a real Store to inject failures and races (the fake of a store is a real
//     embedded store in a temporary file: only that keeps the Store contract).
//   - Registry: an in-memory Registry whose transactions can fail on a chosen method.
//
// Every fake is safe for concurrent use. Fields are set before the fakes are shared; the
// recordings are read through methods.
package securitytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// ErrInjected is the error every injected failure wraps.
var ErrInjected = errors.New("injected failure")

// --- Clock ------------------------------------------------------------------------------------

// Clock is a security.Clock that answers the time it was set to.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock pinned at now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the pinned time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the pinned time by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// --- Signer -----------------------------------------------------------------------------------

// Signer is a security.Signer that signs nothing: a token is "signed.<client_id>.<jti>", so a
// test can tell tokens apart and a log check can look for one.
type Signer struct {
	Err error // when set, Sign and JWKS fail with it

	mu     sync.Mutex
	claims []capif.TokenClaims
}

// Sign records c and returns its token.
func (s *Signer) Sign(_ context.Context, c capif.TokenClaims) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return "", s.Err
	}
	s.claims = append(s.claims, c)
	return Token(c), nil
}

// Token is the token Signer returns for c.
func Token(c capif.TokenClaims) string { return "signed." + c.ClientID + "." + c.ID }

// JWKS returns one fixed P-256 key description.
func (s *Signer) JWKS(context.Context) (capif.JWKSet, error) {
	return capif.JWKSet{Keys: []capif.JWK{{Kty: "EC", Crv: "P-256", X: "x", Y: "y", Kid: "k1", Alg: "ES256", Use: "sig"}}}, s.Err
}

// Claims returns the claims signed so far, in order.
func (s *Signer) Claims() []capif.TokenClaims {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.claims)
}

// --- Notifier ---------------------------------------------------------------------------------

// Sent is one notification a Notifier was asked to deliver.
type Sent struct {
	ID          string // the delivery id (webhook-id)
	Kind        security.OwedKind
	Destination string
	Body        any
}

// Notifier is a security.Notifier that records every notification, delivered or not.
type Notifier struct {
	Err    error                              // when set, every delivery fails with it
	OnSend func(destination string, body any) // runs before the answer, e.g. to look at the store

	mu   sync.Mutex
	sent []Sent
}

// Notify records the notification and answers Err.
func (n *Notifier) Notify(_ context.Context, d security.Delivery) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.OnSend != nil {
		n.OnSend(d.Destination, d.Body)
	}
	n.sent = append(n.sent, Sent{ID: d.ID, Kind: d.Kind, Destination: d.Destination, Body: d.Body})
	return n.Err
}

// Sent returns what Notify was asked to deliver, in order.
func (n *Notifier) Sent() []Sent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.sent)
}

// Revocations returns the bodies of Sent to invokers, which must all be security notifications.
func (n *Notifier) Revocations(t testing.TB) []capif.SecurityNotification {
	t.Helper()
	var out []capif.SecurityNotification
	for _, s := range n.Sent() {
		if s.Kind == security.ToAEF {
			continue
		}
		sn, ok := s.Body.(capif.SecurityNotification)
		if !ok {
			t.Fatalf("notification body is %T, want capif.SecurityNotification", s.Body)
		}
		out = append(out, sn)
	}
	return out
}

// Pushes returns the Sent to AEFs, by destination, which must all be RevokeAuthorizationReq
// bodies.
func (n *Notifier) Pushes(t testing.TB) map[string][]capif.RevokeAuthorizationReq {
	t.Helper()
	out := map[string][]capif.RevokeAuthorizationReq{}
	for _, s := range n.Sent() {
		if s.Kind != security.ToAEF {
			continue
		}
		req, ok := s.Body.(capif.RevokeAuthorizationReq)
		if !ok {
			t.Fatalf("push body is %T, want capif.RevokeAuthorizationReq", s.Body)
		}
		out[s.Destination] = append(out[s.Destination], req)
	}
	return out
}

// --- Store ------------------------------------------------------------------------------------

// Store wraps a security.Store to inject failures and races.
type Store struct {
	security.Store

	LoadErr      error // Load fails with it
	CreateErr    error // Create fails with it
	DeliveredErr error // Delivered fails with it

	mu            sync.Mutex
	Conflicts     int                                // Replace answers ErrConflict this many more times; < 0: always
	OnConflict    func()                             // runs when a conflict is injected
	BeforeReplace func(sc *security.SecurityContext) // runs once, before the next real Replace
	AfterLoad     func()                             // runs once, after the next successful Load
	replaceCalls  int
}

// Load answers LoadErr or the wrapped store's Load.
func (s *Store) Load(ctx context.Context, q security.Query) (*security.Snapshot, error) {
	if s.LoadErr != nil {
		return nil, s.LoadErr
	}
	snap, err := s.Store.Load(ctx, q)
	s.mu.Lock()
	after := s.AfterLoad
	if err == nil {
		s.AfterLoad = nil
	}
	s.mu.Unlock()
	if err == nil && after != nil {
		after()
	}
	return snap, err
}

// Create answers CreateErr or the wrapped store's Create.
func (s *Store) Create(ctx context.Context, sc *security.SecurityContext) error {
	if s.CreateErr != nil {
		return s.CreateErr
	}
	return s.Store.Create(ctx, sc)
}

// Delivered answers DeliveredErr or the wrapped store's Delivered.
func (s *Store) Delivered(ctx context.Context, owedID string) error {
	if s.DeliveredErr != nil {
		return s.DeliveredErr
	}
	return s.Store.Delivered(ctx, owedID)
}

// Replace counts the call, then injects a conflict while Conflicts says so, else runs
// BeforeReplace (once) and the wrapped store's Replace.
func (s *Store) Replace(ctx context.Context, sc *security.SecurityContext, owed []security.Owed) error {
	s.mu.Lock()
	s.replaceCalls++
	if s.Conflicts != 0 {
		if s.Conflicts > 0 {
			s.Conflicts--
		}
		hook := s.OnConflict
		s.mu.Unlock()
		if hook != nil {
			hook()
		}
		return fmt.Errorf("%w: %w", ErrInjected, security.ErrConflict)
	}
	hook := s.BeforeReplace
	s.BeforeReplace = nil
	s.mu.Unlock()
	if hook != nil {
		hook(sc)
	}
	return s.Store.Replace(ctx, sc, owed)
}

// SetConflicts sets Conflicts while the store may be in use.
func (s *Store) SetConflicts(n int) {
	s.mu.Lock()
	s.Conflicts = n
	s.mu.Unlock()
}

// ReplaceCalls counts the Replace calls so far, injected conflicts included.
func (s *Store) ReplaceCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replaceCalls
}

// --- Registry ---------------------------------------------------------------------------------

// Registry is an in-memory security.Registry. Update runs on a copy and keeps it only when fn
// succeeds, so a failed change writes nothing, as the port demands. FailOn makes a RegistryTx
// method fail, so the error paths of the registry rules can be driven without a back end.
type Registry struct {
	mu   sync.Mutex
	data RegistryData

	fail  string
	skip  int
	fired bool
}

// RegistryData is the content of a Registry.
type RegistryData struct {
	Principals      map[string]security.Principal
	AEFs            map[string]security.AEF
	APIs            map[string]capif.ServiceAPIDescription
	Interfaces      map[string][]security.PublishedAPI
	DeletedContexts []string // DeleteContext calls of committed changes, in order
}

var _ security.Registry = (*Registry)(nil)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{data: RegistryData{Principals: map[string]security.Principal{}, AEFs: map[string]security.AEF{},
		APIs: map[string]capif.ServiceAPIDescription{}, Interfaces: map[string][]security.PublishedAPI{}}}
}

// FailOn makes the RegistryTx method named method (e.g. "PutAEF") fail with ErrInjected after
// skip successful calls, in this and the following changes, until it has failed once.
func (r *Registry) FailOn(method string, skip int) {
	r.mu.Lock()
	r.fail, r.skip, r.fired = method, skip, false
	r.mu.Unlock()
}

// Fired reports whether the failure set by FailOn happened.
func (r *Registry) Fired() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fired
}

// Data returns a copy of the committed content.
func (r *Registry) Data() RegistryData {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.data.clone()
}

// Update runs fn on a copy of the content and commits the copy when fn succeeds. Changes are
// serialised, so fn runs once.
func (r *Registry) Update(ctx context.Context, fn func(security.RegistryTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tx := &memTx{r: r, data: r.data.clone()}
	if err := fn(tx); err != nil {
		return err
	}
	r.data = tx.data
	return nil
}

// Records lists the principals and the service APIs, ordered by id.
func (r *Registry) Records(ctx context.Context) (security.RegistryRecords, error) {
	if err := ctx.Err(); err != nil {
		return security.RegistryRecords{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out security.RegistryRecords
	for _, id := range slices.Sorted(maps.Keys(r.data.Principals)) {
		out.Principals = append(out.Principals, r.data.Principals[id])
	}
	for _, id := range slices.Sorted(maps.Keys(r.data.APIs)) {
		out.APIs = append(out.APIs, r.data.APIs[id])
	}
	return out, nil
}

func (d RegistryData) clone() RegistryData {
	out := RegistryData{Principals: maps.Clone(d.Principals), AEFs: map[string]security.AEF{}, APIs: maps.Clone(d.APIs),
		Interfaces: map[string][]security.PublishedAPI{}, DeletedContexts: slices.Clone(d.DeletedContexts)}
	for k, a := range d.AEFs {
		a.APIs = slices.Clone(a.APIs)
		out.AEFs[k] = a
	}
	for k, l := range d.Interfaces {
		out.Interfaces[k] = slices.Clone(l)
	}
	return out
}

// memTx is the RegistryTx of Registry.Update; r.mu is held.
type memTx struct {
	r    *Registry
	data RegistryData
}

func (m *memTx) check(method string) error {
	r := m.r
	if r.fail != method || r.fired {
		return nil
	}
	if r.skip > 0 {
		r.skip--
		return nil
	}
	r.fired = true
	return fmt.Errorf("%s: %w", method, ErrInjected)
}

func (m *memTx) Prefetch([]security.RecordKey) error { return m.check("Prefetch") }

func (m *memTx) GetPrincipal(id string) (*security.Principal, error) {
	if err := m.check("GetPrincipal"); err != nil {
		return nil, err
	}
	p, ok := m.data.Principals[id]
	if !ok {
		return nil, security.ErrNotFound
	}
	return &p, nil
}

func (m *memTx) PutPrincipal(p *security.Principal) error {
	if err := m.check("PutPrincipal"); err != nil {
		return err
	}
	m.data.Principals[p.ID] = *p
	return nil
}

func (m *memTx) DeletePrincipal(id string) error {
	if err := m.check("DeletePrincipal"); err != nil {
		return err
	}
	delete(m.data.Principals, id)
	return nil
}

func (m *memTx) GetAEF(id string) (*security.AEF, error) {
	if err := m.check("GetAEF"); err != nil {
		return nil, err
	}
	a, ok := m.data.AEFs[id]
	if !ok {
		return nil, security.ErrNotFound
	}
	a.APIs = slices.Clone(a.APIs)
	return &a, nil
}

func (m *memTx) PutAEF(a *security.AEF) error {
	if err := m.check("PutAEF"); err != nil {
		return err
	}
	if len(a.APIs) == 0 {
		delete(m.data.AEFs, a.AefID)
	} else {
		c := *a
		c.APIs = slices.Clone(a.APIs)
		m.data.AEFs[a.AefID] = c
	}
	return nil
}

func (m *memTx) GetAPI(id string) (*capif.ServiceAPIDescription, error) {
	if err := m.check("GetAPI"); err != nil {
		return nil, err
	}
	d, ok := m.data.APIs[id]
	if !ok {
		return nil, security.ErrNotFound
	}
	return &d, nil
}

func (m *memTx) PutAPI(d *capif.ServiceAPIDescription) error {
	if err := m.check("PutAPI"); err != nil {
		return err
	}
	m.data.APIs[d.APIID] = *d
	return nil
}

func (m *memTx) DeleteAPI(id string) error {
	if err := m.check("DeleteAPI"); err != nil {
		return err
	}
	delete(m.data.APIs, id)
	return nil
}

func (m *memTx) GetInterface(k string) ([]security.PublishedAPI, error) {
	if err := m.check("GetInterface"); err != nil {
		return nil, err
	}
	l, ok := m.data.Interfaces[k]
	if !ok {
		return nil, security.ErrNotFound
	}
	return slices.Clone(l), nil
}

func (m *memTx) PutInterface(k string, l []security.PublishedAPI) error {
	if err := m.check("PutInterface"); err != nil {
		return err
	}
	if len(l) == 0 {
		delete(m.data.Interfaces, k)
	} else {
		m.data.Interfaces[k] = slices.Clone(l)
	}
	return nil
}

func (m *memTx) PutRevokedCertificate(c *security.RevokedCertificate) error {
	return m.check("PutRevokedCertificate")
}

func (m *memTx) Owe([]security.Owed) error { return m.check("Owe") }

func (m *memTx) DeleteContext(apiInvokerID string, _ func(*security.SecurityContext) ([]security.Owed, error)) error {
	if err := m.check("DeleteContext"); err != nil {
		return err
	}
	m.data.DeletedContexts = append(m.data.DeletedContexts, apiInvokerID)
	return nil
}
