package aefauth_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/aefauth"
)

// FuzzVerify feeds arbitrary Authorization header values to the verifier. Whatever the input,
// Verify must not panic, must answer with an *Error of status 401 or 403 and a well-formed
// challenge, and may accept only the one genuine token of the run. The committed corpus in
// testdata/fuzz/FuzzVerify holds structurally interesting garbage; a genuine token and
// variants of it are added here, since they depend on the run's key.
func FuzzVerify(f *testing.F) {
	c := newCCF(f)
	good := c.token(f, c.claims())
	parts := strings.Split(good, ".")
	for _, s := range []string{
		"Bearer " + good,
		"Bearer " + good[:len(good)-1],
		"Bearer " + parts[0] + "." + parts[1],
		"Bearer " + parts[0] + ".." + parts[2],
		"Bearer " + parts[1] + "." + parts[0] + "." + parts[2],
		"Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"aef-1","exp":1e400}`)) + "." + parts[2],
	} {
		f.Add(s)
	}
	api := c.verifier(f, nil).For(apiName)
	f.Fuzz(func(t *testing.T, header string) {
		r := request("", c.invokerA)
		r.Header.Set("Authorization", header)
		claims, err := api.Verify(t.Context(), r)
		if err == nil {
			if claims == nil || claims.ID != "jti-good" {
				t.Fatalf("accepted %q with claims %+v", header, claims)
			}
			return
		}
		var e *aefauth.Error
		if !errors.As(err, &e) || (e.Status != http.StatusUnauthorized && e.Status != http.StatusForbidden) {
			t.Fatalf("Verify(%q) = %v, want a 401 or 403 *Error", header, err)
		}
		rec := httptest.NewRecorder()
		aefauth.WriteError(rec, aefID, err)
		challenge := rec.Header().Get("WWW-Authenticate")
		if rec.Code != e.Status || !strings.HasPrefix(challenge, "Bearer") || strings.ContainsAny(challenge, "\r\n\x00") {
			t.Fatalf("answer %d, WWW-Authenticate %q", rec.Code, challenge)
		}
	})
}

// FuzzSecurityAPI feeds arbitrary bodies from the CCF's own certificate to both resources of the
// AEF_Security_API: never a panic, a 200 only for a body with the required members, and every
// other answer a problem+json 400.
func FuzzSecurityAPI(f *testing.F) {
	c := newCCF(f)
	ccfCert, err := c.ca.Client("ccf", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	list := aefauth.NewMemoryList()
	v := c.verifier(f, func(cfg *aefauth.Config) {
		cfg.DenyList, cfg.APIs, cfg.CCFRoots = list, map[string]string{apiName: "api-mon"}, c.ca.Pool()
	})
	for _, s := range []string{revokeBody("invoker-1", "api-mon"), `{"revokeInfo":{}}`, `{"apiInvokerId":"ccf","supportedFeatures":"0"}`,
		`{"revokeInfo":{"apiInvokerId":"i","apiIds":[""],"cause":"c"},"supportedFeatures":"g"}`, `null`, `{"revokeInfo":null}`} {
		f.Add(s, true)
		f.Add(s, false)
	}
	h := v.SecurityAPI()
	f.Fuzz(func(t *testing.T, body string, revoke bool) {
		path := aefauth.CheckAuthenticationPath
		if revoke {
			path = aefauth.RevokeAuthorizationPath
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, post(path, body, ccfCert))
		switch w.Code {
		case http.StatusOK:
			if w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("200 with %s", w.Header().Get("Content-Type"))
			}
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			if w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d with %s", w.Code, w.Header().Get("Content-Type"))
			}
		default:
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
	})
}
