package security_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
)

func tokenReq(clientID, secret, scope string) capif.AccessTokenReq {
	return capif.AccessTokenReq{GrantType: "client_credentials", ClientID: clientID, ClientSecret: secret, Scope: scope}
}

// tokenEnv: inv1 (secret) has the standard context (OAUTH on aef1: alpha, beta, delta); inv2 (no
// secret) has OAUTH on aef1/apiB only and PSK on aef2.
func tokenEnv(t *testing.T) *env {
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.create("inv2", &capif.ServiceSecurity{NotificationDestination: "https://inv2.example.com/", SecurityInfo: []capif.SecurityInformation{
		withAPI(entry("aef1", capif.OAUTH), "apiB"), entry("aef2", capif.PSK)}})
	return e
}

func TestTokenRefusals(t *testing.T) {
	t.Parallel()
	formErr := &security.Error{Kind: security.KindInvalid, OAuthError: capif.InvalidRequest, Detail: "parameter grant_type is repeated"}
	tests := []struct {
		name       string
		caller, id string
		req        capif.AccessTokenReq
		reqErr     error
		kind       security.Kind
		code       string // OAuth error code, or the ProblemDetails cause
		mention    string // in the description
	}{
		{name: "no caller", id: "inv1", req: tokenReq("inv1", inv1Secret, ""), kind: security.KindUnauthenticated, code: capif.InvalidClient},
		{name: "unknown caller", caller: "stranger", id: "stranger", req: tokenReq("stranger", "", ""), kind: security.KindUnauthenticated, code: capif.InvalidClient},
		{name: "unknown caller, bad form", caller: "stranger", id: "stranger", req: capif.AccessTokenReq{}, reqErr: formErr, kind: security.KindUnauthenticated, code: capif.InvalidClient},
		{name: "AEF caller", caller: "aef1", id: "aef1", req: tokenReq("aef1", "", ""), kind: security.KindForbidden, code: security.CauseRoleNotAllowed},
		{name: "AEF caller, bad form", caller: "aef1", id: "aef1", req: capif.AccessTokenReq{}, reqErr: formErr, kind: security.KindForbidden, code: security.CauseRoleNotAllowed},
		{name: "securityId of another invoker", caller: "inv1", id: "inv2", req: tokenReq("inv1", inv1Secret, ""), kind: security.KindForbidden, code: security.CauseNotOwner},
		{name: "securityId unknown, bad form", caller: "inv1", id: "nobody", req: capif.AccessTokenReq{}, reqErr: formErr, kind: security.KindForbidden, code: security.CauseNotOwner},
		{name: "bad form", caller: "inv1", id: "inv1", req: capif.AccessTokenReq{}, reqErr: formErr, kind: security.KindInvalid, code: capif.InvalidRequest, mention: "repeated"},
		{name: "client_id of another invoker", caller: "inv1", id: "inv1", req: tokenReq("inv2", inv1Secret, ""), kind: security.KindUnauthenticated, code: capif.InvalidClient, mention: "client_id"},
		{name: "client_id differs before grant_type is looked at", caller: "inv1", id: "inv1", req: capif.AccessTokenReq{GrantType: "password", ClientID: "x"}, kind: security.KindUnauthenticated, code: capif.InvalidClient, mention: "client_id"},
		{name: "grant_type password", caller: "inv1", id: "inv1", req: capif.AccessTokenReq{GrantType: "password", ClientID: "inv1", ClientSecret: inv1Secret}, kind: security.KindInvalid, code: capif.UnsupportedGrantType, mention: "client_credentials"},
		{name: "grant_type wrong, secret wrong too", caller: "inv1", id: "inv1", req: capif.AccessTokenReq{GrantType: "authorization_code", ClientID: "inv1"}, kind: security.KindInvalid, code: capif.UnsupportedGrantType},
		{name: "secret missing", caller: "inv1", id: "inv1", req: tokenReq("inv1", "", ""), kind: security.KindUnauthenticated, code: capif.InvalidClient, mention: "client_secret"},
		{name: "secret wrong", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret+"x", ""), kind: security.KindUnauthenticated, code: capif.InvalidClient, mention: "client_secret"},
		{name: "secret wrong case", caller: "inv1", id: "inv1", req: tokenReq("inv1", strings.ToUpper(inv1Secret), ""), kind: security.KindUnauthenticated, code: capif.InvalidClient, mention: "client_secret"},
		{name: "secret wrong, scope wrong", caller: "inv1", id: "inv1", req: tokenReq("inv1", "nope", "garbage"), kind: security.KindUnauthenticated, code: capif.InvalidClient, mention: "client_secret"},
		{name: "malformed scope", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "aef1:alpha"), kind: security.KindInvalid, code: capif.InvalidScope, mention: "3gpp#"},
		{name: "malformed scope group", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef1:alpha;aef2"), kind: security.KindInvalid, code: capif.InvalidScope, mention: "group 2"},
		{name: "scope: AEF outside OAUTH entries", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef2:gamma"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `AEF "aef2"`},
		{name: "scope: unknown AEF", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef9:alpha"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `AEF "aef9"`},
		{name: "scope: API of another AEF", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef1:gamma"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `API "gamma" of AEF "aef1"`},
		{name: "scope: apiId instead of apiName", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef1:apiA"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `API "apiA"`},
		{name: "scope: one of several outside", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef1:alpha,omega"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `API "omega" of AEF "aef1"`},
		{name: "scope: PKI entry is not OAUTH", caller: "inv1", id: "inv1", req: tokenReq("inv1", inv1Secret, "3gpp#aef2:delta"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `AEF "aef2"`},
		{name: "no OAUTH entry for this API", caller: "inv2", id: "inv2", req: tokenReq("inv2", "", "3gpp#aef1:alpha"), kind: security.KindInvalid, code: capif.InvalidScope, mention: `API "alpha"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tokenEnv(t)
			err := refused(e.svc, security.ObtainAuthorization, tt.caller, tt.id, tt.reqErr)
			if tt.reqErr == nil {
				_, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: tt.caller}, tt.id, tt.req)
			}
			got := wantError(t, err, tt.kind, tt.code)
			if tt.kind == security.KindForbidden && got.OAuthError != "" {
				t.Errorf("a 403 is a ProblemDetails, not an OAuth error %q", got.OAuthError)
			}
			if !strings.Contains(got.Detail, tt.mention) {
				t.Errorf("description %q does not mention %q", got.Detail, tt.mention)
			}
			if len(e.signer.Claims()) != 0 {
				t.Error("a refused request was signed")
			}
		})
	}
}

func TestTokenUnauthorizedClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// inv2 without any context.
	_, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv2"}, "inv2", tokenReq("inv2", "", ""))
	wantError(t, err, security.KindInvalid, capif.UnauthorizedClient)
	// inv1 with a context but no OAUTH entry.
	e.create("inv1", request(entry("aef2", capif.PSK), ifEntry(ifShared, capif.PKI)))
	_, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
	wantError(t, err, security.KindInvalid, capif.UnauthorizedClient)
	_, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, "3gpp#aef2:gamma"))
	wantError(t, err, security.KindInvalid, capif.UnauthorizedClient)
}

func TestTokenIssued(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		caller, secret string
		scope          string
		wantScope      string
		wantAud        []string
	}{
		{name: "no scope grants every OAUTH entry", caller: "inv1", secret: inv1Secret, scope: "", wantScope: "3gpp#aef1:alpha,beta,delta", wantAud: []string{"aef1"}},
		{name: "one API", caller: "inv1", secret: inv1Secret, scope: "3gpp#aef1:beta", wantScope: "3gpp#aef1:beta", wantAud: []string{"aef1"}},
		{name: "canonical order", caller: "inv1", secret: inv1Secret, scope: "3gpp#aef1:delta,alpha,delta", wantScope: "3gpp#aef1:alpha,delta", wantAud: []string{"aef1"}},
		{name: "secret ignored when none was issued", caller: "inv2", secret: "anything", scope: "", wantScope: "3gpp#aef1:beta", wantAud: []string{"aef1"}},
		{name: "no secret, none issued", caller: "inv2", secret: "", scope: "3gpp#aef1:beta", wantScope: "3gpp#aef1:beta", wantAud: []string{"aef1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tokenEnv(t)
			rsp, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: tt.caller}, tt.caller, tokenReq(tt.caller, tt.secret, tt.scope))
			if err != nil {
				t.Fatal(err)
			}
			if len(e.signer.Claims()) != 1 {
				t.Fatalf("%d tokens signed", len(e.signer.Claims()))
			}
			c := e.signer.Claims()[0]
			now := e.clock.Now().Unix()
			want := capif.TokenClaims{Issuer: issuer, Subject: tt.caller, ClientID: tt.caller, Audience: tt.wantAud, Scope: tt.wantScope,
				IssuedAt: now, Expiry: now + 300, ID: c.ID}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("claims %s, want %s", dump(c), dump(want))
			}
			if c.ID == "" {
				t.Error("no jti")
			}
			wantRsp := capif.AccessTokenRsp{AccessToken: securitytest.Token(c), TokenType: "Bearer", ExpiresIn: 300, Scope: tt.wantScope}
			if !reflect.DeepEqual(*rsp, wantRsp) {
				t.Errorf("response %+v, want %+v", *rsp, wantRsp)
			}
		})
	}
}

func TestTokenAcrossAEFsAndAfterRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", request(entry("aef1", capif.OAUTH), ifEntry(ifShared, capif.OAUTH), withAPI(entry("aef2", capif.PSK), "apiC")))
	rsp, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
	if err != nil {
		t.Fatal(err)
	}
	if rsp.Scope != "3gpp#aef1:alpha,beta,delta;aef2:delta" {
		t.Errorf("scope %q", rsp.Scope)
	}
	if aud := e.signer.Claims()[0].Audience; !reflect.DeepEqual(aud, []string{"aef1", "aef2"}) {
		t.Errorf("aud %v", aud)
	}
	rsp, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, "3gpp#aef2:delta;aef1:beta"))
	if err != nil {
		t.Fatal(err)
	}
	if rsp.Scope != "3gpp#aef1:beta;aef2:delta" {
		t.Errorf("scope %q", rsp.Scope)
	}
	if e.signer.Claims()[0].ID == e.signer.Claims()[1].ID {
		t.Error("two tokens share a jti")
	}

	// Revoked APIs leave the scope.
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef2"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, "3gpp#aef2:delta"))
	wantError(t, err, security.KindInvalid, capif.InvalidScope)
	if err := e.svc.Revoke(ctx, security.Caller{ID: "aef1"}, "inv1", revocation("apiB")); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, "3gpp#aef1:beta"))
	got := wantError(t, err, security.KindInvalid, capif.InvalidScope)
	if !strings.Contains(got.Detail, `"beta"`) {
		t.Errorf("description %q", got.Detail)
	}
	rsp, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
	if err != nil {
		t.Fatal(err)
	}
	if rsp.Scope != "3gpp#aef1:alpha,delta" {
		t.Errorf("scope after revocations %q", rsp.Scope)
	}
}

func TestTokenTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *security.Config) { c.TokenTTL = 90 * time.Second })
	e.create("inv1", standardRequest())
	rsp, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
	if err != nil {
		t.Fatal(err)
	}
	c := e.signer.Claims()[0]
	if rsp.ExpiresIn != 90 || c.Expiry-c.IssuedAt != 90 {
		t.Errorf("expires_in %d, exp-iat %d; want 90", rsp.ExpiresIn, c.Expiry-c.IssuedAt)
	}
	// The default lifetime applies when none is configured.
	e = newEnv(t, func(c *security.Config) { c.TokenTTL = 0 })
	e.create("inv1", standardRequest())
	rsp, err = e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
	if err != nil {
		t.Fatal(err)
	}
	if rsp.ExpiresIn <= 0 || e.signer.Claims()[0].Expiry-e.signer.Claims()[0].IssuedAt != rsp.ExpiresIn {
		t.Errorf("default TTL: expires_in %d, claims %s", rsp.ExpiresIn, dump(e.signer.Claims()[0]))
	}
}

func TestTokenSignerFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.signer.Err = errors.New("kms: throttled")
	_, err := e.svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, ""))
	if !errors.Is(err, e.signer.Err) {
		t.Errorf("error %v, want the signer's", err)
	}
	if _, err := e.svc.JWKS(ctx); !errors.Is(err, e.signer.Err) {
		t.Errorf("JWKS error %v", err)
	}
	e.signer.Err = nil
	set, err := e.svc.JWKS(ctx)
	if err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != "k1" {
		t.Errorf("JWKS = %+v, %v", set, err)
	}
}

func TestHashSecret(t *testing.T) {
	t.Parallel()
	if security.HashSecret("") != nil {
		t.Error("an empty secret hashes to something")
	}
	a, b := security.HashSecret("a"), security.HashSecret("b")
	if len(a) != 32 || reflect.DeepEqual(a, b) || !reflect.DeepEqual(a, security.HashSecret("a")) {
		t.Errorf("HashSecret: %x %x", a, b)
	}
}
