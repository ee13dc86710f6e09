package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// MetadataPath is where RFC 8414 §3 puts the authorization server metadata below the host.
const MetadataPath = "/.well-known/oauth-authorization-server"

// JWKSPath is where the keys that verify tokens are served (the metadata's jwks_uri).
const JWKSPath = "/.well-known/jwks.json"

// Metadata is the RFC 8414 authorization server metadata of this CCF, so that stock OAuth 2.0
// clients and token verifiers find the issuer and its keys without CAPIF-specific code.
//
// Deviation from RFC 8414 §2: token_endpoint, REQUIRED there, is omitted. TS 29.222 puts the
// invoker's securityId (its apiInvokerId) in the token endpoint's path, and RFC 8414 has no
// template for such a path; a client forms its own endpoint as
// {apiRoot}/capif-security/v1/securities/{apiInvokerId}/token.
type Metadata struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
	// REQUIRED by §2 even without an authorization endpoint: empty, since no CAPIF operation
	// issues authorization codes.
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	// RFC 8705 §3.3: every token carries cnf.x5t#S256 of the invoker's client certificate.
	TLSClientCertificateBoundAccessTokens bool `json:"tls_client_certificate_bound_access_tokens"`
}

// metadata is the document this CCF serves; it depends only on its configuration.
func (a *api) metadata() Metadata {
	return Metadata{
		Issuer:                 a.svc.Issuer(),
		JWKSURI:                strings.TrimSuffix(a.opts.APIRoot, "/") + JWKSPath,
		ResponseTypesSupported: []string{},
		GrantTypesSupported:    []string{"client_credentials"},
		// tls_client_auth (RFC 8705 §2.1): the client certificate identifies every caller; the
		// two secret methods add the onboarding secret where one was issued.
		TokenEndpointAuthMethodsSupported:     []string{"tls_client_auth", "client_secret_basic", "client_secret_post"},
		TLSClientCertificateBoundAccessTokens: true,
	}
}

// metadataPaths are the request paths of the document: MetadataPath, and the RFC 8414 §3.1
// path form (MetadataPath followed by the path) of the issuer and of {apiRoot} where these are
// URLs with a path. The issuer defaults to {apiRoot}, so both are usually the same.
func metadataPaths(issuer, apiRoot string) []string {
	paths := []string{MetadataPath}
	for _, raw := range []string{issuer, apiRoot} {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" && !slices.Contains(paths, MetadataPath+p) {
			paths = append(paths, MetadataPath+p)
		}
	}
	return paths
}

// addDiscovery adds the GET routes of the metadata document to rt.
func (a *api) addDiscovery(rt *Router) {
	for _, p := range metadataPaths(a.svc.Issuer(), a.opts.APIRoot) {
		rt.Handle(http.MethodGet, p, NameMetadata, a.discovery)
	}
}

// discovery serves the metadata to anyone: like the JWKS it is public.
func (a *api) discovery(w http.ResponseWriter, r *http.Request) {
	// Short public caching, as for the JWKS: it changes only when the CCF is reconfigured.
	w.Header().Set("Cache-Control", jwksCacheControl)
	writeJSON(w, http.StatusOK, contentJSON, a.metadata())
}
