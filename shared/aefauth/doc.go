/*
Package aefauth lets an API exposing function (AEF) accept the access tokens that the CAPIF core
function (CCF) issues through Obtain_Authorization (3GPP TS 29.222 CAPIF_Security_API), and refuse
every other request with the RFC 6750 answer.

Import it as

	import "github.com/capifcore/capif-security/shared/aefauth"

after `go get github.com/capifcore/capif-security`. It needs nothing beyond the standard library
and golang-jwt/jwt/v5.

# Basics

One Verifier per AEF process holds the configuration and the cache of the CCF's keys; For names
the API a route serves; Handler wraps the route:

	v, err := aefauth.New(aefauth.Config{JWKSURL: ccf + "/.well-known/jwks.json", Client: aefauth.MTLSClient(aefCert, ccfCA), Issuer: ccf, AefID: "aef-1"})
	mux.Handle("/monitoring-event/", v.For("monitoring-event").Handler(api))
	claims, _ := aefauth.ClaimsFrom(r.Context()) // inside api: who called, with which grant

API.Verify does the same checks without the middleware and returns an *Error that WriteError
turns into the answer.

# What a token must be

A request is let through only when all of these hold; the first that fails decides the answer.

  - It carries exactly one "Authorization: Bearer <token>" header (RFC 6750 §2.1). The form-body and
    query forms are refused: they end up in logs. No header, or another scheme: 401 with a bare
    Bearer challenge. Two headers: 400 invalid_request.
  - The token is a JWS signed by a key of the CCF's JWKS chosen by its kid alone, with the
    key's algorithm (the JWK's alg, or what its kty implies: ES256 for EC P-256, RS256 for RSA of
    at least 2048 bits with e = 65537; weaker RSA keys are skipped when the JWKS is read) and
    header typ at+jwt (RFC 9068). alg none, HMAC algorithms (whatever the key), PS256 and any
    other algorithm are refused before a key is looked at. A JWKS of RSA keys only is a valid
    set. Upgrade an AEF's aefauth before its CCF switches to RS256: the release before this one
    refuses RS256 tokens.
  - iss equals Config.Issuer; aud contains Config.AefID; exp is present and not past, iat is
    present and not in the future, nbf (if any) is past, each with at most Leeway (30 s, the
    bound of TS 33.122) of clock skew; iat is at most Config.MaxTokenAge ago when that is set.
  - cnf.x5t#S256 (RFC 8705 §3.1) equals the SHA-256 thumbprint of the client certificate of the
    request's own TLS connection, which the server must have verified (r.TLS.VerifiedChains), unless
    Config.SkipCertificateBinding is set.
  - scope, one or more space-separated CAPIF scope elements (3gpp#aefId:api1,api2;aefId2:api3,
    RFC 6749 §3.3), grants Config.AefID the API the route was set up For.

All but the last are 401 invalid_token; the last is 403 insufficient_scope with the scope the
route needs. The error_description is fixed text of this package and never repeats the token.
Garbage of any kind is one of these answers, never a panic.

# Keys

The JWKS is fetched from Config.JWKSURL with Config.Client, which should present the AEF's own
client certificate and trust only the CCF's CA. It is fetched on first use (New never contacts the
CCF), again when a token names a kid the cached set lacks (so a key rotation is picked up without
a restart), and again when the set is older than Config.JWKSMaxAge (so a withdrawn key stops
verifying). Whatever triggers them, fetches are at least Config.RefetchInterval apart and never
concurrent: a flood of tokens with made-up kids costs the CCF one request per interval. A failed
fetch keeps the previous set in use for at most Config.JWKSMaxStale past its max age; before any
fetch succeeded, and after that, requests get 503.

# Certificate binding: when to turn it off

With binding on (the default), a token is only good on a TLS connection made with the certificate
the invoker used to get it from the CCF: a stolen token is useless without the invoker's private
key. It is the check to keep whenever the AEF terminates TLS itself and asks invokers for
certificates (tls.VerifyClientCertIfGiven or tls.RequireAndVerifyClientCert with the CA that issues
invoker certificates). A request without a verified certificate is refused, not waved through:
"check only when one is present" would let a thief pass by presenting none.

TS 33.122's OAuth method does not oblige an invoker to present a certificate to the AEF (only
to the CCF). An AEF that serves invokers connecting with server-authenticated TLS only sets
SkipCertificateBinding, and accepts that whoever holds the token may use it until exp. An AEF
behind a TLS terminator sees no client certificate at all on r.TLS: either the terminator passes
the connection through, or the binding cannot be checked here and must be checked by the
terminator, with SkipCertificateBinding set.

# Revocation

A token is self-contained, so the CCF pushes every revocation to the AEFs it concerns
(AEF_Security_API Revoke_Authorization, TS 29.222 clause 6.2.2.3). Verifier.SecurityAPI is that
API: mount it at capif.AEFSecurityAPIPath+"/" of the AEF's {apiRoot} (the aefSecurityRoot the
CCF's registry holds for it) and give Config a DenyList, Config.APIs (apiName → apiId) and the
CCF's identity (Config.CCFRoots, and Config.CCFPins or Config.CCFName).

  - Who: only the CCF may push: a client certificate verified for clientAuth against CCFRoots,
    whose public key is pinned (SPKIPin) or, without pins, whose one Subject CN is CCFName. A
    listener that serves invokers trusts their CA too: pin the CCF's key, or give the CCF a CA
    of its own. No verified certificate: 401; any other: 403; nothing changes.
  - The rule: Verify refuses (401 invalid_token, "revoked") a token whose sub has an entry for
    the route's apiId with iat ≤ revokedAt + Leeway. revokedAt is this AEF's clock when the push
    arrived (the push carries no time); Leeway (30 s, the skew TS 33.122 allows) keeps a CCF
    clock up to 30 s ahead from slipping a token issued before the revocation through. A token
    the CCF issues within 30 s after the push is refused too: its holder asks for another.
  - An apiId Config.APIs does not hold (the CCF's registry and this AEF's configuration
    disagree): the push revokes the invoker's tokens for every API of this AEF (entry AllAPIs),
    with a WARN naming the apiId.
  - Retention: an entry is kept MaxTokenLifetime + 2×Leeway after revokedAt, and Verify refuses
    any token whose exp − iat exceeds MaxTokenLifetime (default 10 minutes, the CCF's default
    CAPIF_TOKEN_TTL: raise both together), so no token outlives the entry that revokes it.
  - Durability: the 200 RevokeAuthorizationRsp is sent only once DenyList.Record returned; a
    list that fails answers 500, and the CCF retries. MemoryList forgets everything on a restart
    (the revoked tokens are then accepted again until they expire); FileList appends and fsyncs
    each push before the 200 and reads the file back when opened. Replicas of one AEF share a
    store behind DenyList: with a list per process, only the replica that took the push knows.
  - Speed: the CCF pushes before it answers the revocation, so the AEF refuses the token from
    the moment the revoking request is answered.

Config.MaxTokenAge narrows the window further for an AEF that wants tokens younger still.
*/
package aefauth
