package security

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/capifcore/capif-security/shared/capif"
)

// Caller is who sent a request, as the edge established it from a verified client certificate.
// The zero Caller is a request that presented no usable certificate.
type Caller struct {
	// ID is the certificate's one Subject CN: a registry id (apiInvokerId or aefId) or nothing
	// the registry knows. Empty when no usable certificate was presented.
	ID string
	// CertSHA256 is the RFC 8705 thumbprint (base64url SHA-256 of the DER) of that certificate,
	// which certificate-bound access tokens carry as cnf.x5t#S256.
	CertSHA256 string
	// CertKey is capif.CertificateKey of that certificate: what revocations and pins name.
	CertKey string
}

// Operation is one service operation of the CAPIF_Security_API, as far as its identity rule
// goes (TS 29.222 table 5.1-1). Create and update share Obtain_Security_Method's rule; DELETE and
// POST …/delete share Revoke_Authorization's.
type Operation int

// The operations whose identity rules Authorize applies.
const (
	ObtainSecurityMethod Operation = iota + 1 // an invoker on its own trustedInvokers/{id}
	ObtainAuthorization                       // an invoker on its own securities/{id}/token
	ObtainAPIInvokerInfo                      // an AEF on any trustedInvokers/{id}
	RevokeAuthorization                       // an AEF on any trustedInvokers/{id}
)

func (op Operation) String() string {
	switch op {
	case ObtainSecurityMethod:
		return "Obtain_Security_Method"
	case ObtainAuthorization:
		return "Obtain_Authorization"
	case ObtainAPIInvokerInfo:
		return "Obtain_API_Invoker_Info"
	case RevokeAuthorization:
		return "Revoke_Authorization"
	}
	return fmt.Sprintf("Operation(%d)", int(op))
}

// ownTarget reports whether only the resource's owner may use op: a caller addressing another
// id is refused whatever that id holds, so nothing of the target needs to be read.
func (op Operation) ownTarget() bool {
	return op == ObtainSecurityMethod || op == ObtainAuthorization
}

// Authorize applies op's identity rule to caller on the resource id (apiInvokerId or
// securityId) with one registry read of the caller alone. The edge calls it when it could not
// decode a request, so that a decoding error is reported only to a caller allowed to see it;
// the operations apply the same rule to what their own single read returned.
func (s *Service) Authorize(ctx context.Context, op Operation, caller Caller, id string) error {
	snap, err := s.load(ctx, Query{CallerID: caller.ID, CertKey: caller.CertKey})
	if err != nil {
		return err
	}
	return s.authorize(op, snap, caller, id)
}

// loadAuthorized reads q, or only the caller when op's rule refuses it whatever the target
// holds (so a refusal of an owner-only operation takes the same time whatever the target is),
// and applies op's rule. An AEF route's one read includes the target with Query.ForAEF, so a
// context the caller has no entry in is never decoded; reading the caller first would cost
// every AEF request a second round trip.
func (s *Service) loadAuthorized(ctx context.Context, op Operation, caller Caller, id string, q Query) (*Snapshot, error) {
	q.CallerID = caller.ID
	if op.ownTarget() && caller.ID != id {
		q = Query{CallerID: caller.ID}
	}
	q.CertKey = caller.CertKey // a revoked certificate is one more key of the same read
	snap, err := s.load(ctx, q)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(op, snap, caller, id); err != nil {
		return nil, err
	}
	return snap, nil
}

// authorize refuses, before op's identity rule, a certificate the operator revoked
// (capif-admin revoke-cert) and one its principal did not pin, each with a WARN naming the
// reason and the certificate's key (never the certificate).
func (s *Service) authorize(op Operation, snap *Snapshot, caller Caller, id string) error {
	refuse := func(reason string) error {
		s.cfg.Logger.Warn("client certificate refused", slog.String("reason", reason), slog.String("operation", op.String()),
			slog.String("caller", caller.ID), slog.String("certKey", caller.CertKey))
		return Unauthenticated(op, "the client certificate "+reason)
	}
	if r := snap.RevokedCert; r != nil && !s.clock.Now().After(r.Until()) {
		return refuse("was revoked")
	}
	if p := snap.Caller; p != nil && len(p.CertificatePins) > 0 && !slices.Contains(p.CertificatePins, caller.CertKey) {
		return refuse("is not one that " + p.ID + " pinned")
	}
	return authorize(op, snap.Caller, caller.ID, id)
}

// authorize is the identity rule of every operation, in the order the API answers: unknown
// caller 401, wrong role 403, another invoker's resource 403 (whether or not it exists).
func authorize(op Operation, p *Principal, callerID, id string) error {
	want := RoleAEF
	if op.ownTarget() {
		want = RoleInvoker
	}
	switch {
	case p == nil:
		return Unauthenticated(op, "the client certificate does not identify a registered API invoker or AEF")
	case p.Role != want && want == RoleInvoker:
		return forbidden(CauseRoleNotAllowed, "only an API invoker may use "+op.String())
	case p.Role != want:
		return forbidden(CauseRoleNotAllowed, "only an API exposing function may use "+op.String())
	case op == ObtainAuthorization && callerID != id:
		return forbidden(CauseNotOwner, "securityId must be the calling API invoker's id")
	case op.ownTarget() && callerID != id:
		return forbidden(CauseNotOwner, "an API invoker may only manage its own security context")
	}
	return nil
}

// Unauthenticated is the 401 answer of op: an OAuth invalid_client on the token endpoint
// (RFC 6749 §5.2), a ProblemDetails elsewhere.
func Unauthenticated(op Operation, detail string) *Error {
	if op == ObtainAuthorization {
		return oauth(KindUnauthenticated, capif.InvalidClient, detail)
	}
	return unauthenticated(detail)
}
