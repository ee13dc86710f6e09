package aefauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// DefaultCCFName is Config.CCFName when it is not set: the CCF's default CAPIF_CCF_NAME.
const DefaultCCFName = "ccf"

// DefaultRevocationMemory is Config.RevocationMemory when it is not set: longer than any token
// lifetime a CCF is likely to configure (CAPIF_TOKEN_TTL defaults to ten minutes).
const DefaultRevocationMemory = 24 * time.Hour

// maxRevokeBody bounds a RevokeAuthorizationReq: a few hundred bytes in practice.
const maxRevokeBody = 64 << 10

// revocations remembers what the CCF revoked: per invoker and API name, when. A token of that
// invoker for that API issued at or before then is refused.
type revocations struct {
	mu     sync.Mutex
	byAPI  map[string]map[string]time.Time // apiInvokerId → API name ("" for every API) → when
	seen   map[string]time.Time            // webhook-id → when, so a repeated push changes nothing
	memory time.Duration
}

// revoked reports whether a token of invoker issued at iat no longer grants api: issued before
// the push arrived, by this AEF's clock, plus Leeway for the CCF's clock being ahead (a token
// the CCF issues in those seconds is refused too; its holder gets another).
func (r *revocations) revoked(invoker, api string, iat time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range []string{api, ""} {
		if at, ok := r.byAPI[invoker][name]; ok && iat.Before(at.Add(Leeway)) {
			return true
		}
	}
	return false
}

// record notes a revocation of names (nil: every API) at now, forgetting what is older than the
// memory, unless the push id was seen before.
func (r *revocations) record(id, invoker string, names []string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, at := range r.seen {
		if now.Sub(at) > r.memory {
			delete(r.seen, k)
		}
	}
	for inv, apis := range r.byAPI {
		for name, at := range apis {
			if now.Sub(at) > r.memory {
				delete(apis, name)
			}
		}
		if len(apis) == 0 {
			delete(r.byAPI, inv)
		}
	}
	if id != "" {
		if _, dup := r.seen[id]; dup {
			return
		}
		r.seen[id] = now
	}
	if r.byAPI[invoker] == nil {
		r.byAPI[invoker] = map[string]time.Time{}
	}
	if names == nil {
		names = []string{""}
	}
	for _, n := range names {
		r.byAPI[invoker][n] = now
	}
}

// RevokeAuthorization is this AEF's Revoke_Authorization (AEF_Security_API, TS 29.222): mount
// it at capif.RevokeAuthorizationPath of the AEF's {apiRoot}, on a server that asks for client
// certificates. Only the CCF may call it: a client certificate whose Subject CN is
// Config.CCFName and that verifies against Config.CCFRoots. A RevokeAuthorizationReq
// for this AEF makes Verify refuse, from then on, every token of that invoker for those APIs
// issued before the push (401 invalid_token "the token was revoked"); tokens the CCF issues
// afterwards (beyond Leeway) are not affected. Its answer is 200 with a RevokeAuthorizationRsp, or a
// problem+json 400, 403, 405, 413 or 415.
//
// The cut-off is the push's arrival by this AEF's clock, plus Leeway: a push the CCF had to
// retry (the AEF was down) also refuses tokens issued while it was retried, which errs on the
// safe side (the invoker obtains another). An apiId is turned into the API name tokens carry
// through Config.APIIDs; an apiId it does not list revokes every API of the invoker here, also
// on the safe side. Revocations are kept in memory for Config.RevocationMemory: an AEF that
// restarts forgets them (the tokens still expire).
func (v *Verifier) RevokeAuthorization() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, detail := v.revokeAuthorization(r)
		if status != http.StatusOK {
			writeProblem(w, status, detail)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(capif.RevokeAuthorizationRsp{SupportedFeatures: "0"})
	})
}

// revokeAuthorization checks and records one push; its answer is a status and, unless 200, why.
func (v *Verifier) revokeAuthorization(r *http.Request) (int, string) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "only POST"
	}
	if !v.fromCCF(r.TLS) {
		return http.StatusForbidden, "only the CCF, with its verified client certificate, may revoke authorizations"
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, "the body must be application/json"
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRevokeBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "the body is too large"
	case err != nil:
		return http.StatusBadRequest, "the body could not be read"
	}
	var req capif.RevokeAuthorizationReq
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil || dec.More() {
		return http.StatusBadRequest, "the body is not a RevokeAuthorizationReq"
	}
	info := req.RevokeInfo
	switch {
	case info.APIInvokerID == "" || len(info.APIIDs) == 0 || slices.Contains(info.APIIDs, "") || info.Cause == "":
		return http.StatusBadRequest, "revokeInfo needs apiInvokerId, apiIds and cause"
	case req.SupportedFeatures == "":
		return http.StatusBadRequest, "supportedFeatures is required"
	case info.AefID != "" && info.AefID != v.cfg.AefID:
		return http.StatusBadRequest, "revokeInfo names another AEF"
	}
	var names []string
	for _, id := range info.APIIDs {
		name, ok := v.cfg.APIIDs[id]
		if !ok {
			names = nil // an apiId this AEF cannot name: every API of the invoker
			break
		}
		names = append(names, name)
	}
	v.revoked.record(r.Header.Get("webhook-id"), info.APIInvokerID, names, v.cfg.Now())
	return http.StatusOK, ""
}

// fromCCF reports whether the connection presented the CCF's certificate: Subject CN
// Config.CCFName, verified for client authentication against Config.CCFRoots (with the
// intermediates the client sent).
func (v *Verifier) fromCCF(cs *tls.ConnectionState) bool {
	if v.cfg.CCFRoots == nil || cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	if leaf.Subject.CommonName != v.cfg.CCFName {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: v.cfg.CCFRoots, Intermediates: inter, CurrentTime: v.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
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
