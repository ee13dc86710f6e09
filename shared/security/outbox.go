package security

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// Owed is a notification recorded with the change that owes it (transactional outbox), with
// the state of its delivery. Records written before the delivery state existed have only the
// first four fields: they are due at once.
type Owed struct {
	ID           string                     `json:"id"`
	APIInvokerID string                     `json:"apiInvokerId"`
	Destination  string                     `json:"destination"`
	Notification capif.SecurityNotification `json:"notification"`
	// Kind says who receives it: the invoker (also when absent, as in records written before
	// AEFs were pushed to), at its notificationDestination, or an AEF, at its
	// revoke-authorization, as a RevokeAuthorizationReq built at delivery.
	Kind OwedKind `json:"kind,omitempty"`

	CreatedAt time.Time `json:"createdAt,omitzero"`
	// WindowFrom starts the retry window (CreatedAt, or the time of a redrive).
	WindowFrom  time.Time `json:"windowFrom,omitzero"`
	Attempts    int       `json:"attempts,omitempty"`
	LastError   string    `json:"lastError,omitempty"` // never a token or a PSK: notifier errors name no URL path
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	// ClaimedUntil: a worker holds the record for one attempt until then.
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`
	Dead         bool      `json:"dead,omitempty"`
}

// OwedKind names the receiver of an owed notification.
type OwedKind string

// The receivers of owed notifications.
const (
	ToInvoker OwedKind = "invoker"
	ToAEF     OwedKind = "aef"
)

// pushIDPrefix starts the id of every push to an AEF: the id is the record's key, which no
// writer changes, so a push stays a push even after a worker of a release before pushes
// rewrote the record without its kind.
const pushIDPrefix = "p"

// Receiver is o's kind: ToAEF for a push (by its kind, or its id), else ToInvoker.
func (o Owed) Receiver() OwedKind {
	if o.Kind == ToAEF || strings.HasPrefix(o.ID, pushIDPrefix) {
		return ToAEF
	}
	return ToInvoker
}

// Outbox is the delivery side of the owed notifications (part of Store). Every method is
// conditional where two workers could meet, so an attempt is made by one worker at a time.
type Outbox interface {
	// Delivered removes a record once its notification reached the invoker; removing one that is
	// gone is not an error.
	Delivered(ctx context.Context, id string) error
	// Due lists every live (not dead) record whose NextAttempt and ClaimedUntil are not after
	// now (zero times count as due), in no particular order: Service.DeliverDue orders and
	// batches them.
	Due(ctx context.Context, now time.Time) ([]Owed, error)
	// Claim holds o, as Due listed it, for one attempt until until: ErrConflict when another
	// worker holds it or it changed since it was listed.
	Claim(ctx context.Context, o Owed, now, until time.Time) error
	// Attempted stores the delivery state of o after a failed attempt (Attempts, LastError,
	// NextAttempt, Dead, CreatedAt, WindowFrom) and releases the claim, if the record is still
	// held with ClaimedUntil equal to held: ErrConflict otherwise.
	Attempted(ctx context.Context, o Owed, held time.Time) error
	// Pending lists every record, live and dead (operators; never on a request path).
	Pending(ctx context.Context) ([]Owed, error)
	// Redrive makes a dead record due at now with a new retry window from now; ErrNotFound
	// when there is no dead record id.
	Redrive(ctx context.Context, id string, now time.Time) error
	// Drop deletes a record, live or dead; ErrNotFound when there is none.
	Drop(ctx context.Context, id string) error
}

// Delivery policy defaults (Config overrides each).
const (
	DefaultRetryBase           = 30 * time.Second
	DefaultRetryCap            = 30 * time.Minute
	DefaultRetryWindow         = 24 * time.Hour
	DefaultClaimLease          = time.Minute
	DefaultDeliveryConcurrency = 16
	dueBatch                   = 100
)

// DeliveryOutcome is what became of one delivery attempt.
type DeliveryOutcome string

// The outcomes of an attempt (Config.OnDelivery).
const (
	Delivered    DeliveryOutcome = "delivered"
	Retried      DeliveryOutcome = "retried"
	DeadLettered DeliveryOutcome = "dead-lettered"
)

// DeliveryReport counts what one delivery run did.
type DeliveryReport struct {
	Delivered, Retried, DeadLettered, Claimed int
}

// owe builds what revoking apiIDs at AEF aef from context sc owes: the invoker's notification
// and, when the AEF has an aefSecurityRoot (and pushes are on), the AEF's push. The caller
// writes the records with the change, claimed for the attempt made inline right after the commit
// (a push is left unclaimed for the worker under AEFPushQueued).
func (s *Service) owe(sc *SecurityContext, aef *Principal, apiIDs []string, cause capif.Cause) []Owed {
	now := s.clock.Now()
	o := Owed{
		ID:           s.owedID(),
		APIInvokerID: sc.APIInvokerID,
		Destination:  sc.NotificationDestination,
		Notification: capif.SecurityNotification{APIInvokerID: sc.APIInvokerID, AefID: aef.ID, APIIDs: apiIDs, Cause: cause},
		CreatedAt:    now,
		WindowFrom:   now,
		NextAttempt:  now,
		ClaimedUntil: now.Add(s.cfg.ClaimLease),
	}
	if aef.AefSecurityRoot != "" && s.cfg.AEFPush == AEFPushOff {
		s.cfg.Logger.Warn("revocation not pushed: the AEF has an aefSecurityRoot, but this deployment has no CCF certificate",
			slog.String("aefId", aef.ID))
	}
	if aef.AefSecurityRoot == "" || s.cfg.AEFPush == AEFPushOff {
		return []Owed{o}
	}
	push := o
	push.ID, push.Kind = pushIDPrefix+s.randomString(16), ToAEF
	push.Destination = aef.AefSecurityRoot + capif.RevokeAuthorizationPath
	if s.cfg.AEFPush == AEFPushQueued {
		push.ClaimedUntil = time.Time{}
	}
	return []Owed{o, push}
}

// owedID is a new outbox record id of an invoker's notification. A letter first: an id that
// began with "-" would read as a flag on capif-admin's command line (outbox-redrive ID).
func (s *Service) owedID() string { return "n" + s.randomString(16) }

// body is what a delivery of o POSTs: the SecurityNotification to an invoker; to an AEF, a
// RevokeAuthorizationReq carrying it without the revoked token (the AEF that revoked it sent
// it; the others never saw it), with no optional feature.
func (o Owed) body() any {
	if o.Receiver() != ToAEF {
		return o.Notification
	}
	info := o.Notification
	info.AccessToken = ""
	return capif.RevokeAuthorizationReq{RevokeInfo: info, SupportedFeatures: "0"}
}

// deliver makes the first attempt of notifications a committed change owes, before the handler
// returns (a Lambda freezes once it returns: no goroutine may outlive the request), several at
// a time. A failure is recorded on the record for the worker's retries.
func (s *Service) deliver(ctx context.Context, owed []Owed) {
	ctx = context.WithoutCancel(ctx)
	s.each(owed, func(o Owed) {
		// A record whose claim is about to lapse (an admin removal committing thousands of
		// contexts first) is left to the worker, which claims it anew: two attempts of one
		// notification never run at the same time.
		// An unclaimed record (AEFPushQueued) is the worker's.
		if s.clock.Now().Add(s.inlineMargin()).After(o.ClaimedUntil) {
			return
		}
		s.attempt(ctx, o)
	})
}

// inlineMargin is the claim time an inline attempt needs left to start: what one attempt and
// its record take, at most half the lease.
func (s *Service) inlineMargin() time.Duration { return min(deliveryTail, s.cfg.ClaimLease/2) }

// each runs fn on every record, at most Config.DeliveryConcurrency at a time, and waits.
func (s *Service) each(owed []Owed, fn func(Owed)) {
	if len(owed) == 1 {
		fn(owed[0])
		return
	}
	sem := make(chan struct{}, s.cfg.DeliveryConcurrency)
	var wg sync.WaitGroup
	for _, o := range owed {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(o)
		})
	}
	wg.Wait()
}

// attempt delivers one held record (o.ClaimedUntil is the claim), records the outcome and
// returns it ("" when the outcome could not be recorded).
func (s *Service) attempt(ctx context.Context, o Owed) DeliveryOutcome {
	done := func(outcome DeliveryOutcome) DeliveryOutcome {
		if s.cfg.OnDelivery != nil {
			s.cfg.OnDelivery(ctx, outcome)
		}
		return outcome
	}
	held := o.ClaimedUntil
	err := s.notifier.Notify(ctx, Delivery{ID: o.ID, Kind: o.Receiver(), Destination: o.Destination, Body: o.body()})
	log := s.cfg.Logger.With(slog.String("notificationId", o.ID), slog.String("apiInvokerId", o.APIInvokerID),
		slog.String("aefId", o.Notification.AefID), slog.String("destination", RedactURL(o.Destination)), slog.Int("attempt", o.Attempts+1))
	if err == nil {
		if derr := s.store.Delivered(ctx, o.ID); derr != nil {
			// Delivered, but the record stays: it will be sent again, which receivers de-duplicate.
			log.Warn("notification delivered; outbox record not cleared", slog.String("error", derr.Error()))
		} else {
			log.Info("notification delivered")
		}
		return done(Delivered)
	}
	now := s.clock.Now()
	if o.CreatedAt.IsZero() {
		o.CreatedAt = now // a record from before delivery state was kept
	}
	if o.WindowFrom.IsZero() {
		o.WindowFrom = o.CreatedAt
	}
	o.Attempts++
	o.LastError = err.Error()
	o.ClaimedUntil = time.Time{}
	o.NextAttempt = now.Add(s.backoff(o.Attempts))
	outcome := Retried
	switch {
	case errors.Is(err, ErrUndeliverable):
		o.Dead, outcome = true, DeadLettered
	case o.NextAttempt.Sub(o.WindowFrom) > s.cfg.RetryWindow:
		o.Dead, outcome = true, DeadLettered
		o.LastError = fmt.Sprintf("retry window of %s exhausted; last error: %s", s.cfg.RetryWindow, o.LastError)
	}
	if aerr := s.store.Attempted(ctx, o, held); aerr != nil {
		log.Warn("notification not delivered; its delivery state was not recorded", slog.String("error", err.Error()), slog.String("outboxError", aerr.Error()))
		return ""
	}
	level := failureLevel(err, o.Dead)
	if o.Dead {
		log.Log(ctx, level, "notification dead-lettered", slog.String("kind", string(o.Receiver())), slog.String("error", o.LastError))
	} else {
		log.Log(ctx, level, "notification not delivered; will retry", slog.String("kind", string(o.Receiver())), slog.String("error", o.LastError), slog.Time("nextAttempt", o.NextAttempt))
	}
	return done(outcome)
}

// failureLevel is how loud a failed attempt is logged. ERROR is for faults of the service: an
// AEF refusing our request or our certificate. What the destination causes (refused by the
// guard, 410, an AEF's 404, silence until the window ends) is a WARN, with the dead-letter
// metric; an attempt at a destination where nothing listens is DEBUG until it is dead.
func failureLevel(err error, dead bool) slog.Level {
	switch {
	case errors.Is(err, ErrNotAccepted):
		return slog.LevelError
	case errors.Is(err, ErrNoListener) && !dead:
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// backoff is exponential with full jitter: uniform in (0, min(cap, base·2^(n-1))]. The
// doubling stops at the cap, so it cannot overflow however many attempts were made.
func (s *Service) backoff(attempts int) time.Duration {
	d := s.cfg.RetryBase
	for i := 1; i < attempts && d < s.cfg.RetryCap; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryCap)
	if d <= 0 {
		d = time.Millisecond
	}
	return time.Duration(rand.Int64N(int64(d))) + time.Millisecond
}

// deliveryTail is the time a run keeps back from its deadline: more than one attempt (the
// notifier's timeout) and the writes that record it take.
const deliveryTail = 15 * time.Second

// DeliverDue is the delivery worker: it lists the outbox records that are due and, at most
// Config.DeliveryConcurrency at a time, claims each (a conditional write: records another
// worker holds are left to it) and attempts it; until none is due, or ctx's deadline is less
// than deliveryTail away.
func (s *Service) DeliverDue(ctx context.Context) (DeliveryReport, error) {
	var rep DeliveryReport
	var mu sync.Mutex
	late := func() bool {
		dl, ok := ctx.Deadline()
		return ctx.Err() != nil || ok && time.Until(dl) < deliveryTail
	}
	tried := map[string]bool{}
	for !late() {
		due, err := s.store.Due(ctx, s.clock.Now())
		if err != nil {
			return rep, fmt.Errorf("delivery: listing due notifications: %w", err)
		}
		due = slices.DeleteFunc(due, func(o Owed) bool { return tried[o.ID] }) // an answer that did not stick
		if len(due) == 0 {
			return rep, nil
		}
		// The longest due first (ties by id, so every store gives the same order), a batch at a
		// time: a run that stops at its deadline has made the oldest attempts.
		slices.SortFunc(due, func(a, b Owed) int {
			if c := a.NextAttempt.Compare(b.NextAttempt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		due = due[:min(len(due), dueBatch)]
		for _, o := range due {
			tried[o.ID] = true
		}
		s.each(due, func(o Owed) {
			if late() {
				return
			}
			now := s.clock.Now()
			until := now.Add(s.cfg.ClaimLease)
			if err := s.store.Claim(ctx, o, now, until); err != nil {
				if !errors.Is(err, ErrConflict) {
					s.cfg.Logger.Warn("notification not claimed", slog.String("notificationId", o.ID), slog.String("error", err.Error()))
				}
				return
			}
			o.ClaimedUntil = until
			outcome := s.attempt(context.WithoutCancel(ctx), o)
			mu.Lock()
			defer mu.Unlock()
			rep.Claimed++
			switch outcome {
			case Delivered:
				rep.Delivered++
			case Retried:
				rep.Retried++
			case DeadLettered:
				rep.DeadLettered++
			}
		})
	}
	return rep, nil
}

// Backlog is what the outbox holds: per receiver, the live records and the age of the oldest
// (since it was owed), and the dead letters.
type Backlog struct {
	PendingInvoker, PendingAEF int
	OldestInvoker, OldestAEF   time.Duration
	DeadLetters                int
}

// Backlog reads the outbox (every record: the worker's run line and the runner's ticker
// publish it as gauges).
func (s *Service) Backlog(ctx context.Context) (Backlog, error) {
	all, err := s.store.Pending(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("delivery: reading the outbox: %w", err)
	}
	now := s.clock.Now()
	var b Backlog
	for _, o := range all {
		age := time.Duration(0)
		if !o.CreatedAt.IsZero() {
			age = now.Sub(o.CreatedAt)
		}
		switch {
		case o.Dead:
			b.DeadLetters++
		case o.Receiver() == ToAEF:
			b.PendingAEF++
			b.OldestAEF = max(b.OldestAEF, age)
		default:
			b.PendingInvoker++
			b.OldestInvoker = max(b.OldestInvoker, age)
		}
	}
	return b, nil
}

// Outbox gives operators the records (never the notification's access token in any output:
// callers render only what they need).
func (s *Service) Outbox(ctx context.Context) ([]Owed, error) { return s.store.Pending(ctx) }

// Redrive makes a dead notification due now, with a new retry window.
func (s *Service) Redrive(ctx context.Context, id string) error {
	return s.store.Redrive(ctx, id, s.clock.Now())
}

// DropNotification deletes an owed notification, delivered or not: the operator gives up on it.
func (s *Service) DropNotification(ctx context.Context, id string) error {
	return s.store.Drop(ctx, id)
}
