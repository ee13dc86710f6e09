package aefauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/capifcore/capif-security/shared/capif"
)

// DefaultCCFName is Config.CCFName when it is not set: the CCF's default CAPIF_CCF_NAME.
const DefaultCCFName = "ccf"

// maxRevokeBody bounds a request body of the AEF_Security_API: a few hundred bytes in practice.
const maxRevokeBody = 64 << 10

// The resources of the AEF_Security_API, below the AEF's {apiRoot}.
const (
	RevokeAuthorizationPath = capif.RevokeAuthorizationPath
	CheckAuthenticationPath = capif.AEFSecurityAPIPath + "/check-authentication"
)

// SPKIPin is the pin of a certificate's public key for Config.CCFPins: the standard base64 of
// the SHA-256 of its SubjectPublicKeyInfo (as HPKP's pin-sha256). A pin survives the CCF's
// certificate renewals, which keep the key.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// SecurityAPI is this AEF's AEF_Security_API (TS 29.222 clause 6.2): mount it at
// capif.AEFSecurityAPIPath+"/" of the AEF's {apiRoot} (the CCF's registry knows that root as the
// AEF's aefSecurityRoot), on a TLS server that asks for client certificates and verifies them.
//
//   - POST …/revoke-authorization (Revoke_Authorization) is the CCF's: a verified client
//     certificate for clientAuth that chains to Config.CCFRoots and whose public key is one of
//     Config.CCFPins or, with no pins, whose Subject CN is Config.CCFName. No verified
//     certificate: 401; another one: 403; neither changes anything. A RevokeAuthorizationReq is
//     recorded in Config.DenyList (the time is this AEF's receipt: the request carries none),
//     and only once the list has it durably does the answer say 200 RevokeAuthorizationRsp; a
//     list that fails answers 500, and the CCF retries. From then on Verify refuses the
//     invoker's tokens for those APIs issued up to Leeway after the push.
//   - POST …/check-authentication (Check_Authentication) is an invoker's: a verified client
//     certificate whose Subject CN is the body's apiInvokerId gets 200 CheckAuthenticationRsp;
//     it changes nothing.
//
// Bodies are application/json with a Content-Length (411 without, 413 above 64 KiB, 415 for
// another type) and their required members present (400). Every refusal is a problem+json.
func (v *Verifier) SecurityAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var status int
		var detail string
		var rsp any
		switch {
		case strings.HasSuffix(r.URL.Path, RevokeAuthorizationPath):
			status, detail = v.revokeAuthorization(r)
			rsp = capif.RevokeAuthorizationRsp{SupportedFeatures: "0"}
		case strings.HasSuffix(r.URL.Path, CheckAuthenticationPath):
			status, detail = v.checkAuthentication(r)
			rsp = capif.CheckAuthenticationRsp{SupportedFeatures: "0"}
		default:
			status, detail = http.StatusNotFound, "no such resource of the AEF_Security_API"
		}
		if status != http.StatusOK {
			writeProblem(w, status, detail)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(rsp)
	})
}

// revokeAuthorization checks and records one push; its answer is a status and, unless 200, why.
func (v *Verifier) revokeAuthorization(r *http.Request) (int, string) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "only POST"
	}
	if status, detail := v.fromCCF(r.TLS); status != http.StatusOK {
		return status, detail
	}
	var req struct {
		RevokeInfo        *capif.SecurityNotification `json:"revokeInfo"`
		SupportedFeatures *string                     `json:"supportedFeatures"`
	}
	if status, detail := readJSON(r, &req); status != http.StatusOK {
		return status, detail
	}
	info := req.RevokeInfo
	switch {
	case info == nil || info.APIInvokerID == "" || len(info.APIIDs) == 0 || slices.Contains(info.APIIDs, "") || info.Cause == "":
		return http.StatusBadRequest, "revokeInfo needs apiInvokerId, apiIds (at least one) and cause"
	case !hexFeatures(req.SupportedFeatures):
		return http.StatusBadRequest, "supportedFeatures is required, in hexadecimal"
	case info.AefID != "" && info.AefID != v.cfg.AefID:
		return http.StatusBadRequest, "revokeInfo names another AEF"
	case v.cfg.DenyList == nil:
		return http.StatusInternalServerError, "this AEF keeps no deny list"
	}
	apiIDs := slices.Clone(info.APIIDs)
	for _, id := range info.APIIDs {
		if !slices.Contains(v.apiIDs, id) {
			// The registry and this AEF's configuration disagree: which of its APIs the CCF
			// meant is unknown, so the revocation covers them all rather than none.
			v.cfg.Logger.Warn("aefauth: a revocation names an apiId this AEF does not serve (Config.APIs); revoking the invoker's tokens for all its APIs",
				slog.String("apiId", id))
			if !slices.Contains(apiIDs, AllAPIs) {
				apiIDs = append(apiIDs, AllAPIs)
			}
		}
	}
	now := v.cfg.Now()
	rev := Revocation{PushID: r.Header.Get("webhook-id"), APIInvokerID: info.APIInvokerID, APIIDs: apiIDs,
		At: now, Until: now.Add(v.cfg.MaxTokenLifetime + 2*Leeway)}
	if err := v.cfg.DenyList.Record(context.WithoutCancel(r.Context()), rev); err != nil {
		v.cfg.Logger.Error("aefauth: the deny list did not record a revocation; the CCF will retry", slog.String("error", err.Error()))
		return http.StatusInternalServerError, "the revocation could not be recorded"
	}
	return http.StatusOK, ""
}

// checkAuthentication answers an invoker that presents its own verified certificate.
func (v *Verifier) checkAuthentication(r *http.Request) (int, string) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "only POST"
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return http.StatusUnauthorized, "a verified client certificate is required"
	}
	var req struct {
		APIInvokerID      string  `json:"apiInvokerId"`
		SupportedFeatures *string `json:"supportedFeatures"`
	}
	if status, detail := readJSON(r, &req); status != http.StatusOK {
		return status, detail
	}
	switch {
	case req.APIInvokerID == "" || !hexFeatures(req.SupportedFeatures):
		return http.StatusBadRequest, "apiInvokerId and supportedFeatures (hexadecimal) are required"
	}
	if cn, ok := capif.SubjectCN(r.TLS.PeerCertificates[0]); !ok || cn != req.APIInvokerID {
		return http.StatusForbidden, "the client certificate is not the apiInvokerId's"
	}
	return http.StatusOK, ""
}

// fromCCF is 200 when the connection presented the CCF's certificate: verified for clientAuth
// against Config.CCFRoots (with the intermediates the client sent), and pinned (Config.CCFPins)
// or, without pins, named Config.CCFName; 401 with no verified certificate, 403 otherwise.
func (v *Verifier) fromCCF(cs *tls.ConnectionState) (int, string) {
	if cs == nil || len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 {
		return http.StatusUnauthorized, "a verified client certificate is required"
	}
	const notCCF = "only the CCF may revoke authorizations"
	if v.cfg.CCFRoots == nil {
		return http.StatusForbidden, notCCF + " (this AEF has no Config.CCFRoots)"
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.cfg.CCFRoots, Intermediates: inter, CurrentTime: v.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return http.StatusForbidden, notCCF
	}
	if len(v.cfg.CCFPins) > 0 {
		if !slices.Contains(v.cfg.CCFPins, SPKIPin(leaf)) {
			return http.StatusForbidden, notCCF
		}
		return http.StatusOK, ""
	}
	if cn, ok := capif.SubjectCN(leaf); !ok || cn != v.cfg.CCFName {
		return http.StatusForbidden, notCCF
	}
	return http.StatusOK, ""
}

// readJSON reads a JSON body of at most maxRevokeBody bytes into v.
func readJSON(r *http.Request, v any) (int, string) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, "the body must be application/json"
	}
	switch {
	case r.ContentLength < 0:
		return http.StatusLengthRequired, "a Content-Length is required"
	case r.ContentLength > maxRevokeBody:
		return http.StatusRequestEntityTooLarge, "the body is too large"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRevokeBody+1))
	switch {
	case err != nil:
		return http.StatusBadRequest, "the body could not be read"
	case len(body) > maxRevokeBody:
		return http.StatusRequestEntityTooLarge, "the body is too large"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil || dec.More() {
		return http.StatusBadRequest, "the body is not the JSON object the AEF_Security_API defines"
	}
	return http.StatusOK, ""
}

// hexFeatures: a SupportedFeatures value is present and hexadecimal (TS 29.571).
func hexFeatures(s *string) bool {
	return s != nil && strings.Trim(*s, "0123456789abcdefABCDEF") == ""
}

// writeProblem answers with a TS 29.122 ProblemDetails.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(capif.ProblemDetails{Status: status, Title: http.StatusText(status), Detail: detail})
}
