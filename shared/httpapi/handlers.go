package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// The access line's operation of the two routes that are no TS 29.222 operation; the others
// are their security.Operation's name (Obtain_Security_Method, …).
const (
	NameJWKS     = "JWKS"
	NameMetadata = "Authorization_Server_Metadata" // RFC 8414
)

// Options configure the handlers.
type Options struct {
	APIRoot      string            // public {apiRoot} for Location headers
	Certificates CertificateSource // where the caller's verified certificate comes from
	Logger       *slog.Logger
	RequestID    func(*http.Request) string // default RandomRequestID
	// MetricsNamespace is the CloudWatch namespace of the access log's metrics; "" writes none.
	MetricsNamespace string
	// Admit, when set, runs on every request before it is routed: an error is the answer (the
	// one error mapping), else the request it returns is routed. A Lambda function reads its
	// truststore there, once per request, and hands it on in the request's context.
	Admit func(*http.Request) (*http.Request, error)
}

type api struct {
	svc  *security.Service
	opts Options
}

func newRouter(svc *security.Service, opts Options) (*Router, *api) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RequestID == nil {
		opts.RequestID = RandomRequestID
	}
	if opts.Certificates == nil {
		opts.Certificates = TLSClientCertificate
	}
	return &Router{log: &accessLog{logger: opts.Logger, requestID: opts.RequestID, namespace: opts.MetricsNamespace}, admit: opts.Admit},
		&api{svc: svc, opts: opts}
}

const invokerPath = Base + "/trustedInvokers/{apiInvokerId}"

// ObtainSecurityMethod serves PUT trustedInvokers/{apiInvokerId} and POST …/update.
func ObtainSecurityMethod(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.Handle(http.MethodPut, invokerPath, security.ObtainSecurityMethod.String(), a.create)
	rt.Handle(http.MethodPost, invokerPath+"/update", security.ObtainSecurityMethod.String(), a.update)
	return rt
}

// ObtainAuthorization serves POST securities/{securityId}/token, GET /.well-known/jwks.json
// and the RFC 8414 metadata (discovery.go).
func ObtainAuthorization(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.Handle(http.MethodPost, Base+"/securities/{securityId}/token", security.ObtainAuthorization.String(), a.token)
	rt.Handle(http.MethodGet, JWKSPath, NameJWKS, a.jwks)
	a.addDiscovery(rt)
	return rt
}

// ObtainAPIInvokerInfo serves GET trustedInvokers/{apiInvokerId}.
func ObtainAPIInvokerInfo(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.Handle(http.MethodGet, invokerPath, security.ObtainAPIInvokerInfo.String(), a.get)
	return rt
}

// RevokeAuthorization serves DELETE trustedInvokers/{apiInvokerId} and POST …/delete.
func RevokeAuthorization(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.Handle(http.MethodDelete, invokerPath, security.RevokeAuthorization.String(), a.revokeAll)
	rt.Handle(http.MethodPost, invokerPath+"/delete", security.RevokeAuthorization.String(), a.revoke)
	return rt
}

// All serves every operation (the local runner).
func All(svc *security.Service, opts Options) *Router {
	rt, _ := newRouter(svc, opts)
	for _, f := range []func(*security.Service, Options) *Router{ObtainSecurityMethod, ObtainAuthorization, ObtainAPIInvokerInfo, RevokeAuthorization} {
		rt.Mount(f(svc, opts))
	}
	return rt
}

// identify applies the one identity rule of the API and answers 401 itself when it fails,
// before anything of the request is read: the caller is the verified client certificate's one
// Subject CN, with the certificate's thumbprint. Whether that id is registered, and in which
// role, the domain decides.
func (a *api) identify(w http.ResponseWriter, r *http.Request, op security.Operation) (security.Caller, bool) {
	cert, err := a.opts.Certificates(r)
	switch {
	case err != nil:
		a.opts.Logger.Debug("client certificate rejected", "reason", err.Error())
		err = security.Unauthenticated(op, "the client certificate was not accepted: "+err.Error())
	case cert == nil:
		err = security.Unauthenticated(op, "no client certificate was presented; this API authenticates callers by mutual TLS")
	default:
		var id string
		if id, err = CallerID(cert); err == nil {
			infoOf(r).caller = id
			return security.Caller{ID: id, CertSHA256: capif.CertThumbprint(cert.Raw), CertKey: capif.CertificateKey(cert)}, true
		}
		err = security.Unauthenticated(op, err.Error())
	}
	if op == security.ObtainAuthorization {
		challengeBasic(w, r, err)
	}
	writeError(w, r, err)
	return security.Caller{}, false
}

// refuse answers a request that could not be decoded. A body that broke off is answered at once
// (the client is at fault and likely gone); otherwise the caller's identity rule comes first, so
// that a decoding error is told only to a caller who may use the operation on id.
func (a *api) refuse(w http.ResponseWriter, r *http.Request, op security.Operation, caller security.Caller, id string, decodeErr error) {
	var re *requestError
	if !errors.As(decodeErr, &re) || re.clientFault == nil {
		if err := a.svc.Authorize(r.Context(), op, caller, id); err != nil {
			decodeErr = err
		}
	}
	if op == security.ObtainAuthorization {
		challengeBasic(w, r, decodeErr)
	}
	writeError(w, r, decodeErr)
}

// noStore marks responses that may carry secrets (PSKs, tokens) as uncacheable.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	a.securityMethod(w, r, http.StatusCreated, a.svc.CreateSecurityContext)
}

func (a *api) update(w http.ResponseWriter, r *http.Request) {
	a.securityMethod(w, r, http.StatusOK, a.svc.UpdateSecurityContext)
}

// securityMethod is Obtain_Security_Method's create (201 with Location) and update (200): one
// identity rule, one body, one answer.
func (a *api) securityMethod(w http.ResponseWriter, r *http.Request, status int,
	do func(context.Context, security.Caller, string, *capif.ServiceSecurity) (*capif.ServiceSecurity, error)) {
	const op = security.ObtainSecurityMethod
	id := r.PathValue("apiInvokerId")
	caller, ok := a.identify(w, r, op)
	if !ok {
		return
	}
	var body capif.ServiceSecurity
	if err := decodeJSON(r, &body); err != nil {
		a.refuse(w, r, op, caller, id, err)
		return
	}
	out, err := do(r.Context(), caller, id, &body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	noStore(w)
	if status == http.StatusCreated {
		w.Header().Set("Location", security.ResourceURI(a.opts.APIRoot, id))
	}
	writeJSON(w, status, contentJSON, out)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	const op = security.ObtainAPIInvokerInfo
	id := r.PathValue("apiInvokerId")
	caller, ok := a.identify(w, r, op)
	if !ok {
		return
	}
	q, err := invokerInfoQuery(r)
	if err != nil {
		a.refuse(w, r, op, caller, id, err)
		return
	}
	out, err := a.svc.GetInvokerInfo(r.Context(), caller, id, q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, contentJSON, out)
}

// invokerInfoQuery reads the query flags and the Accept header of GET trustedInvokers/{id}.
func invokerInfoQuery(r *http.Request) (security.InvokerInfoQuery, error) {
	var q security.InvokerInfoQuery
	values, err := parseQuery(r.URL.RawQuery)
	if err == nil {
		q.AuthenticationInfo, err = queryFlag(values, "authenticationInfo")
	}
	if err == nil {
		q.AuthorizationInfo, err = queryFlag(values, "authorizationInfo")
	}
	if err == nil && !acceptsJSON(r.Header.Get("Accept")) {
		err = &requestError{status: http.StatusNotAcceptable, cause: CauseNotAcceptable, detail: "the response is application/json"}
	}
	return q, err
}

func (a *api) revokeAll(w http.ResponseWriter, r *http.Request) {
	caller, ok := a.identify(w, r, security.RevokeAuthorization)
	if !ok {
		return
	}
	if err := a.svc.RevokeAll(r.Context(), caller, r.PathValue("apiInvokerId")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) revoke(w http.ResponseWriter, r *http.Request) {
	const op = security.RevokeAuthorization
	id := r.PathValue("apiInvokerId")
	caller, ok := a.identify(w, r, op)
	if !ok {
		return
	}
	var body capif.SecurityNotification
	if err := decodeJSON(r, &body); err != nil {
		a.refuse(w, r, op, caller, id, err)
		return
	}
	if err := a.svc.Revoke(r.Context(), caller, id, &body); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) token(w http.ResponseWriter, r *http.Request) {
	const op = security.ObtainAuthorization
	// Every token response, success or error, must not be cached (RFC 6749 §5.1).
	noStore(w)
	id := r.PathValue("securityId")
	caller, ok := a.identify(w, r, op)
	if !ok {
		return
	}
	req, err := decodeTokenRequest(r)
	if err != nil {
		a.refuse(w, r, op, caller, id, err)
		return
	}
	out, err := a.svc.ObtainAuthorization(r.Context(), caller, id, req)
	if err != nil {
		challengeBasic(w, r, err)
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, contentJSON, out)
}

func (a *api) jwks(w http.ResponseWriter, r *http.Request) {
	set, err := a.svc.JWKS(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Short public caching: key rotation waits capif.JWKSMaxAge before a new key signs.
	w.Header().Set("Cache-Control", jwksCacheControl)
	writeJSON(w, http.StatusOK, contentJSON, set)
}

var jwksCacheControl = "public, max-age=" + strconv.Itoa(int(capif.JWKSMaxAge.Seconds()))

// acceptsJSON reports whether an Accept header admits application/json (absent admits all).
func acceptsJSON(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if params["q"] == "0" || params["q"] == "0.0" || params["q"] == "0.00" || params["q"] == "0.000" {
			continue
		}
		if mt == "*/*" || mt == "application/*" || mt == contentJSON {
			return true
		}
	}
	return false
}
