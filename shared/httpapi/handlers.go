package httpapi

import (
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// Operation names, as in TS 29.222 table 5.1-1; they name the log field and the Lambda functions.
const (
	OpObtainSecurityMethod = "Obtain_Security_Method"
	OpObtainAuthorization  = "Obtain_Authorization"
	OpObtainAPIInvokerInfo = "Obtain_API_Invoker_Info"
	OpRevokeAuthorization  = "Revoke_Authorization"
	OpJWKS                 = "JWKS"
)

// Options configure the handlers.
type Options struct {
	APIRoot      string            // public {apiRoot} for Location headers
	Certificates CertificateSource // where the caller's verified certificate comes from
	Logger       *slog.Logger
	RequestID    func(*http.Request) string // default RandomRequestID
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
	return &Router{log: &accessLog{logger: opts.Logger, requestID: opts.RequestID}}, &api{svc: svc, opts: opts}
}

const invokerPath = Base + "/trustedInvokers/{apiInvokerId}"

// ObtainSecurityMethod serves PUT trustedInvokers/{apiInvokerId} and POST …/update.
func ObtainSecurityMethod(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.add(http.MethodPut, invokerPath, OpObtainSecurityMethod, a.create)
	rt.add(http.MethodPost, invokerPath+"/update", OpObtainSecurityMethod, a.update)
	return rt
}

// ObtainAuthorization serves POST securities/{securityId}/token and GET /.well-known/jwks.json.
func ObtainAuthorization(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.add(http.MethodPost, Base+"/securities/{securityId}/token", OpObtainAuthorization, a.token)
	rt.add(http.MethodGet, "/.well-known/jwks.json", OpJWKS, a.jwks)
	return rt
}

// ObtainAPIInvokerInfo serves GET trustedInvokers/{apiInvokerId}.
func ObtainAPIInvokerInfo(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.add(http.MethodGet, invokerPath, OpObtainAPIInvokerInfo, a.get)
	return rt
}

// RevokeAuthorization serves DELETE trustedInvokers/{apiInvokerId} and POST …/delete.
func RevokeAuthorization(svc *security.Service, opts Options) *Router {
	rt, a := newRouter(svc, opts)
	rt.add(http.MethodDelete, invokerPath, OpRevokeAuthorization, a.revokeAll)
	rt.add(http.MethodPost, invokerPath+"/delete", OpRevokeAuthorization, a.revoke)
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

// caller applies the identity rule. No certificate, or one without exactly one usable CN, is
// the same as an unknown caller: the domain answers 401 for it.
func (a *api) caller(r *http.Request) string {
	cert, err := a.opts.Certificates(r)
	if err != nil {
		a.opts.Logger.Debug("client certificate rejected", "reason", err.Error())
		return ""
	}
	id, err := CallerID(cert)
	if err != nil {
		return ""
	}
	infoOf(r).caller = id
	return id
}

// noStore marks responses that may carry secrets (PSKs, tokens) as uncacheable.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("apiInvokerId")
	var body capif.ServiceSecurity
	bodyErr := decodeJSON(r, &body)
	out, err := a.svc.CreateSecurityContext(r.Context(), a.caller(r), id, &body, bodyErr)
	if err != nil {
		writeError(w, r, err)
		return
	}
	noStore(w)
	w.Header().Set("Location", security.ResourceURI(a.opts.APIRoot, id))
	writeJSON(w, http.StatusCreated, contentJSON, out)
}

func (a *api) update(w http.ResponseWriter, r *http.Request) {
	var body capif.ServiceSecurity
	bodyErr := decodeJSON(r, &body)
	out, err := a.svc.UpdateSecurityContext(r.Context(), a.caller(r), r.PathValue("apiInvokerId"), &body, bodyErr)
	if err != nil {
		writeError(w, r, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, contentJSON, out)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	var authn, authz bool
	q, queryErr := parseQuery(r.URL.RawQuery)
	if queryErr == nil {
		authn, queryErr = queryFlag(q, "authenticationInfo")
	}
	if queryErr == nil {
		authz, queryErr = queryFlag(q, "authorizationInfo")
	}
	if queryErr == nil && !acceptsJSON(r.Header.Get("Accept")) {
		queryErr = &security.Error{Kind: security.KindNotAcceptable, Cause: "NOT_ACCEPTABLE", Detail: "the response is application/json"}
	}
	out, err := a.svc.GetInvokerInfo(r.Context(), a.caller(r), r.PathValue("apiInvokerId"), authn, authz, queryErr)
	if err != nil {
		writeError(w, r, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, contentJSON, out)
}

func (a *api) revokeAll(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.RevokeAll(r.Context(), a.caller(r), r.PathValue("apiInvokerId")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) revoke(w http.ResponseWriter, r *http.Request) {
	var body capif.SecurityNotification
	bodyErr := decodeJSON(r, &body)
	if err := a.svc.Revoke(r.Context(), a.caller(r), r.PathValue("apiInvokerId"), &body, bodyErr); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) token(w http.ResponseWriter, r *http.Request) {
	// Every token response, success or error, must not be cached (RFC 6749 §5.1).
	noStore(w)
	req, reqErr := decodeTokenRequest(r)
	out, err := a.svc.ObtainAuthorization(r.Context(), a.caller(r), r.PathValue("securityId"), req, reqErr)
	if err != nil {
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
	// Short public caching: AEFs refetch soon enough to see a rotated key.
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, contentJSON, set)
}

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
