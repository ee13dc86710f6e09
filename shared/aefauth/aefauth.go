package aefauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/capifcore/capif-security/shared/capif"
)

// Leeway is the clock skew allowed on exp, iat and nbf (capif.Leeway).
const Leeway = capif.Leeway

// Defaults of the Config durations left zero.
const (
	DefaultRefetchInterval  = 30 * time.Second
	DefaultJWKSMaxAge       = capif.JWKSMaxAge // the CCF's Cache-Control max-age
	DefaultJWKSMaxStale     = 24 * time.Hour
	DefaultMaxTokenLifetime = 10 * time.Minute
)

// Config says which tokens a Verifier accepts. JWKSURL, Client, Issuer and AefID are required.
type Config struct {
	// JWKSURL is the https URL of the CCF's JWKS, for example
	// https://ccf.example/.well-known/jwks.json.
	JWKSURL string
	// Client fetches the JWKS. It should present the AEF's own client certificate and trust only
	// the CCF's CA (MTLSClient makes one): the keys decide what the AEF believes.
	Client *http.Client
	// Issuer is the CCF's issuer identifier; the token's iss must equal it.
	Issuer string
	// AefID is this AEF's id; the token's aud must contain it and its scope must grant it the API.
	AefID string

	// SkipCertificateBinding turns off the RFC 8705 check that the token's cnf x5t#S256 is the
	// thumbprint of the verified client certificate of the request's TLS connection. Leave it
	// false unless the AEF serves invokers that do not present a certificate to it (doc.go).
	SkipCertificateBinding bool
	// MaxTokenAge, when positive, refuses tokens issued longer ago than this, even before exp.
	MaxTokenAge time.Duration
	// RefetchInterval is the least time between two JWKS fetches, whatever the requests; zero
	// means DefaultRefetchInterval.
	RefetchInterval time.Duration
	// JWKSMaxAge is how long a fetched JWKS is used before it is fetched again, so that a key the
	// CCF withdrew stops verifying; zero means DefaultJWKSMaxAge.
	JWKSMaxAge time.Duration
	// JWKSMaxStale is how long past JWKSMaxAge a set is still used while the CCF cannot be
	// reached; after it, requests get 503. Zero means DefaultJWKSMaxStale.
	JWKSMaxStale time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// MaxTokenLifetime bounds exp − iat: Verify refuses a token that would live longer, so no
	// token outlives the deny list's entry that revokes it. Zero means DefaultMaxTokenLifetime,
	// the CCF's default CAPIF_TOKEN_TTL: raise both together.
	MaxTokenLifetime time.Duration

	// The AEF_Security_API (SecurityAPI): the revocations the CCF pushes are kept in DenyList
	// (nil: none are taken), whose entries Verify consults; APIs names this AEF's APIs, apiName
	// (as given to For) → apiId (as pushes name them); CCFRoots, CCFPins and CCFName say who the
	// CCF is: a certificate that chains to CCFRoots for clientAuth and whose public key is one
	// of CCFPins (SPKIPin) or, without pins, whose one Subject CN is CCFName ("" means
	// DefaultCCFName). Prefer pins, or a CCF CA apart from the invokers': a listener that serves
	// invokers trusts their CA too. Without CCFRoots no push is accepted.
	DenyList DenyList
	APIs     map[string]string
	CCFRoots *x509.CertPool
	CCFPins  []string
	CCFName  string
	// Logger gets the warnings of the AEF_Security_API; nil means slog.Default().
	Logger *slog.Logger
}

// Verifier checks CCF access tokens for one AEF. It is safe for concurrent use; make one per AEF
// process, it holds the JWKS cache.
type Verifier struct {
	cfg    Config
	keys   *keySet
	parser *jwt.Parser
	apiIDs []string // Config.APIs' values
}

// New checks cfg and returns its Verifier. It does not contact the CCF: the JWKS is fetched on
// first use, so an AEF can start while the CCF is unreachable.
func New(cfg Config) (*Verifier, error) {
	u, err := url.Parse(cfg.JWKSURL)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "":
		return nil, errors.New("aefauth: JWKSURL must be an https URL")
	case cfg.Client == nil:
		return nil, errors.New("aefauth: Client is required (it carries the AEF's client certificate)")
	case cfg.Issuer == "":
		return nil, errors.New("aefauth: Issuer is required")
	case cfg.AefID == "":
		return nil, errors.New("aefauth: AefID is required")
	case cfg.MaxTokenAge < 0 || cfg.RefetchInterval < 0 || cfg.JWKSMaxAge < 0 || cfg.JWKSMaxStale < 0 || cfg.MaxTokenLifetime < 0:
		return nil, errors.New("aefauth: durations must not be negative")
	}
	if cfg.RefetchInterval == 0 {
		cfg.RefetchInterval = DefaultRefetchInterval
	}
	if cfg.JWKSMaxAge == 0 {
		cfg.JWKSMaxAge = DefaultJWKSMaxAge
	}
	if cfg.JWKSMaxStale == 0 {
		cfg.JWKSMaxStale = DefaultJWKSMaxStale
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CCFName == "" {
		cfg.CCFName = DefaultCCFName
	}
	if cfg.MaxTokenLifetime == 0 {
		cfg.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Verifier{
		cfg:    cfg,
		apiIDs: slices.Collect(maps.Values(cfg.APIs)),
		keys: &keySet{
			url: cfg.JWKSURL, client: cfg.Client, now: cfg.Now,
			minInterval: cfg.RefetchInterval, maxAge: cfg.JWKSMaxAge, maxStale: cfg.JWKSMaxStale,
		},
		parser: jwt.NewParser(
			jwt.WithValidMethods(capif.Algs), // none, HMAC, PS256 … refused before any key is looked at
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.AefID),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
	}, nil
}

// Claims are the claims of a verified token.
type Claims struct {
	jwt.RegisteredClaims
	ClientID     string              `json:"client_id"`
	Scope        string              `json:"scope"`
	Confirmation *capif.Confirmation `json:"cnf,omitempty"`
	// APIs are the API names the scope grants this AEF (not part of the token).
	APIs []string `json:"-"`
}

// API is the check of one API of the AEF: the token must grant this AEF that API.
type API struct {
	v        *Verifier
	name, id string
}

// For returns the check of the API named apiName (the name in the CAPIF scope, as published in
// the ServiceAPIDescription). It is cheap; routes may call it once at set-up. With a deny list
// it panics when Config.APIs does not give apiName's apiId: revocations of the API would be
// missed.
func (v *Verifier) For(apiName string) *API {
	id, ok := v.cfg.APIs[apiName]
	if v.cfg.DenyList != nil && !ok {
		panic("aefauth: For(" + apiName + "): Config.APIs does not name its apiId, which revocations name")
	}
	return &API{v: v, name: apiName, id: id}
}

// Verify checks the bearer token of r for the API and returns its claims, or an *Error saying
// how to answer: 401 invalid_token for anything wrong with the token or its binding, 403
// insufficient_scope for a good token that does not grant the API, 400 invalid_request for a
// request that is malformed, 401 without an error code when no bearer token was sent.
func (a *API) Verify(ctx context.Context, r *http.Request) (*Claims, error) {
	raw, e := bearer(r)
	if e != nil {
		return nil, e
	}
	c, e := a.v.parse(ctx, raw)
	if e != nil {
		return nil, e
	}
	if e := a.v.checkBinding(r, c); e != nil {
		return nil, e
	}
	if e := a.v.checkAge(c); e != nil {
		return nil, e
	}
	if e := a.v.checkLifetime(c); e != nil {
		return nil, e
	}
	apis, err := grants(c.Scope, a.v.cfg.AefID)
	if err != nil {
		return nil, invalidToken("the token's scope is malformed")
	}
	c.APIs = apis
	if !slices.Contains(apis, a.name) {
		e := refuse(http.StatusForbidden, CodeInsufficientScope, "the token does not grant this API")
		e.Scope = capif.Scope{a.v.cfg.AefID: {a.name}}.String()
		return nil, e
	}
	if e := a.checkRevoked(ctx, c); e != nil {
		return nil, e
	}
	return c, nil
}

type claimsKey struct{}

// Handler is the middleware: it lets through only requests whose token Verify accepts, with the
// claims in the request context (ClaimsFrom), and answers the others per RFC 6750.
func (a *API) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Verify(r.Context(), r)
		if err != nil {
			WriteError(w, a.v.cfg.AefID, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

// ClaimsFrom returns the claims that Handler verified for this request.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// bearer extracts the token of the RFC 6750 §2.1 Authorization header. The other two forms
// (form body, query) are not accepted: they leak into logs and caches.
func bearer(r *http.Request) (string, *Error) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return "", refuse(http.StatusBadRequest, CodeInvalidRequest, "more than one Authorization header")
	}
	if len(values) == 0 {
		return "", &Error{Status: http.StatusUnauthorized, Description: "a bearer token is required"}
	}
	scheme, token, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &Error{Status: http.StatusUnauthorized, Description: "a bearer token is required"}
	}
	token = strings.TrimLeft(token, " ")
	if !isB64Token(token) {
		return "", invalidToken("the Authorization header does not carry a well-formed bearer token")
	}
	return token, nil
}

// isB64Token is the RFC 6750 §2.1 b64token syntax: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
// "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~+/", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// parse verifies the signature, typ, iss, aud, exp, iat and nbf.
func (v *Verifier) parse(ctx context.Context, raw string) (*Claims, *Error) {
	c := &Claims{}
	_, err := v.parser.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		// RFC 9068 §4: the typ header tells an access token from other JWTs of the same key.
		typ, _ := t.Header["typ"].(string)
		if !strings.EqualFold(typ, capif.Typ) && !strings.EqualFold(typ, "application/"+capif.Typ) {
			return nil, invalidToken("the token is not an RFC 9068 access token (typ)")
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, invalidToken("the token names no key (kid)")
		}
		k, err := v.keys.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		// The key, chosen by kid alone, decides the algorithm: an RS256 header on an EC key's
		// kid (or the reverse) is refused.
		if t.Method.Alg() != k.alg {
			return nil, invalidToken("the token's algorithm is not its key's")
		}
		return k.pub, nil
	})
	if err == nil {
		if c.IssuedAt == nil {
			return nil, invalidToken("the token has no iat")
		}
		return c, nil
	}
	return nil, tokenError(err)
}

// tokenError maps a golang-jwt parse error onto the answer; the descriptions are ours, so that
// nothing of the token is echoed back.
func tokenError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidToken("the token is malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken("the token's signature or algorithm is invalid")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("the token has expired")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued), errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidToken("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalidToken("the token is not meant for this AEF (aud)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalidToken("the token is not from the expected issuer (iss)")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("the token lacks a required claim")
	default:
		return invalidToken("the token is invalid")
	}
}

// checkBinding is the RFC 8705 §3 proof of possession: the token must name the certificate of
// the TLS connection it arrives on. A connection without a verified client certificate fails,
// since "check only when one is present" would let a thief pass by presenting none.
func (v *Verifier) checkBinding(r *http.Request, c *Claims) *Error {
	if v.cfg.SkipCertificateBinding {
		return nil
	}
	if c.Confirmation == nil || c.Confirmation.X5tS256 == "" {
		return invalidToken("the token is not bound to a certificate (cnf)")
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return invalidToken("the token is certificate-bound and the connection has no verified client certificate")
	}
	if capif.CertThumbprint(r.TLS.PeerCertificates[0].Raw) != c.Confirmation.X5tS256 {
		return invalidToken("the token is bound to another certificate")
	}
	return nil
}

// checkLifetime refuses a token meant to live longer than Config.MaxTokenLifetime: the deny
// list forgets an entry once no token it covers can be valid.
func (v *Verifier) checkLifetime(c *Claims) *Error {
	if c.ExpiresAt.Sub(c.IssuedAt.Time) > v.cfg.MaxTokenLifetime {
		return invalidToken(fmt.Sprintf("the token lives longer than this AEF accepts (%s)", v.cfg.MaxTokenLifetime))
	}
	return nil
}

// checkRevoked refuses a token of an invoker whose authorization for the API (or, AllAPIs, for
// every API of this AEF) the CCF revoked (SecurityAPI) after issuing it: iat ≤ the push's arrival + Leeway, since the CCF's clock may
// be up to Leeway ahead of this AEF's. A token issued in the Leeway after the push is refused
// too; its holder asks for another. An entry older than MaxTokenLifetime + 2×Leeway covers no
// valid token and is not looked at.
func (a *API) checkRevoked(ctx context.Context, c *Claims) *Error {
	l := a.v.cfg.DenyList
	if l == nil {
		return nil
	}
	at, ok, err := l.RevokedAt(ctx, c.Subject, a.id)
	if err == nil {
		var all time.Time
		var allOK bool
		if all, allOK, err = l.RevokedAt(ctx, c.Subject, AllAPIs); allOK && (!ok || all.After(at)) {
			at, ok = all, true
		}
	}
	switch {
	case err != nil:
		return &Error{Status: http.StatusServiceUnavailable, Description: "the deny list cannot be read"}
	case ok && !a.v.cfg.Now().After(at.Add(a.v.cfg.MaxTokenLifetime+2*Leeway)) && !c.IssuedAt.After(at.Add(Leeway)):
		return invalidToken("revoked")
	}
	return nil
}

func (v *Verifier) checkAge(c *Claims) *Error {
	if v.cfg.MaxTokenAge > 0 && v.cfg.Now().Sub(c.IssuedAt.Time) > v.cfg.MaxTokenAge {
		return invalidToken(fmt.Sprintf("the token is older than this AEF accepts (%s)", v.cfg.MaxTokenAge))
	}
	return nil
}

// grants is the union, over the space-separated scope elements (RFC 6749 §3.3), of the API
// names each CAPIF scope element grants aefID.
func grants(scope, aefID string) ([]string, error) {
	sc, err := capif.ParseScope(scope) // the union of the elements, each name once
	if err != nil {
		return nil, err
	}
	return sc[aefID], nil
}

// MTLSClient is an http.Client for Config.Client: it presents cert (the AEF's own client
// certificate) and trusts only ccfRoots for the CCF's server certificate.
func MTLSClient(cert tls.Certificate, ccfRoots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: fetchTimeout,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{cert},
				RootCAs:      ccfRoots,
			},
			Proxy: http.ProxyFromEnvironment,
		},
	}
}
