package security

import (
	"context"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

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
	var targets []Target
	if snap.Context != nil {
		for _, e := range snap.Context.Entries {
			if e.SelSecurityMethod != capif.OAUTH {
				continue
			}
			targets = append(targets, e.Targets...)
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
		if err := within(want, allowed, targets); err != nil {
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

// within names the first pair of want (AEFs, then API names, in sorted order) that allowed
// lacks: a token may be granted no API its context does not allow for OAUTH. Scopes name APIs
// by apiName, contexts by apiId: a name that is the apiId of one of targets (allowed's) is a
// likely mix-up, and the error names the apiName meant.
func within(want, allowed capif.Scope, targets []Target) error {
	for _, aef := range want.AEFs() {
		if _, ok := allowed[aef]; !ok {
			return fmt.Errorf("AEF %q is not authorized for OAUTH in the API invoker's security context", aef)
		}
		for _, name := range slices.Sorted(slices.Values(want[aef])) {
			if allowed.Has(aef, name) {
				continue
			}
			if i := slices.IndexFunc(targets, func(t Target) bool { return t.AefID == aef && t.APIID == name }); i >= 0 {
				return fmt.Errorf("API %q of AEF %q is not authorized for OAUTH in the API invoker's security context: a scope names an API by its apiName, and %q is the apiId of %q (3gpp#%s:%s)",
					name, aef, name, targets[i].APIName, aef, targets[i].APIName)
			}
			return fmt.Errorf("API %q of AEF %q is not authorized for OAUTH in the API invoker's security context", name, aef)
		}
	}
	return nil
}
