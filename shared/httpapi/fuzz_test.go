package httpapi

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/security"
)

// wantClientError asserts that a refusal is a requestError with a 4xx status.
func wantClientError(t *testing.T, err error) {
	t.Helper()
	var re *requestError
	if !errors.As(err, &re) || re.status < 400 || re.status > 499 {
		t.Fatalf("refusal %v (%T) is not a 4xx requestError", err, err)
	}
}

// FuzzDecodeJSON: no panic; a refusal is a 4xx; an accepted body decodes to values that
// re-encode to a body that is accepted again and decodes to the same values, and the domain's
// validation of them never panics.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"notificationDestination":"https://x.example.com","securityInfo":[{"aefId":"a","prefSecurityMethods":["PSK"]}]}`,
		`{"apiInvokerId":"i","apiIds":["a"],"cause":"OVERLIMIT_USAGE"}`,
		`{"a":{"a":"\u00e9\ud83d\ude00"},"A":1}`, `[[[[1]]]]`, `{"x":1e999}`, `{"securityInfo":"x"}`, "\xff", `{"a":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decode := func(b []byte, v any) error {
			r := httptest.NewRequest(http.MethodPost, "/x", bytes.NewReader(b))
			r.Header.Set("Content-Type", "application/json")
			return decodeJSON(r, v)
		}
		var ss capif.ServiceSecurity
		if err := decode(body, &ss); err != nil {
			wantClientError(t, err)
		} else {
			_ = security.ValidateServiceSecurity(&ss)
			again, err := json.Marshal(&ss)
			if err != nil {
				t.Fatal(err)
			}
			var ss2 capif.ServiceSecurity
			if err := decode(again, &ss2); err != nil {
				t.Fatalf("re-encoded body %s refused: %v", again, err)
			}
			if b2, _ := json.Marshal(&ss2); !bytes.Equal(b2, again) {
				t.Fatalf("round trip changed %s into %s", again, b2)
			}
		}
		var n capif.SecurityNotification
		if err := decode(body, &n); err != nil {
			wantClientError(t, err)
		} else {
			_ = security.ValidateRevocation(&n, "inv")
		}
	})
}

// FuzzDecodeTokenRequest: form body and Authorization header together. No panic; refusals are
// 4xx; an accepted request has a grant_type and a client_id, and its values are valid UTF-8
// only if the input's were.
func FuzzDecodeTokenRequest(f *testing.F) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("inv-1:s%2Bcret"))
	f.Add("grant_type=client_credentials&client_id=inv-1&scope=3gpp%23a%3Ab+3gpp%23c%3Ad", "")
	f.Add("grant_type=client_credentials", basic)
	f.Add("grant_type=client_credentials&client_secret=x", basic)
	f.Add("grant_type=client_credentials&resOwnerId%5Bgpsi%5D=msisdn-1", "Bearer x")
	f.Add("a=%zz", "Basic !!")
	f.Fuzz(func(t *testing.T, form, authorization string) {
		r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		req, err := decodeTokenRequest(r)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if req.GrantType == "" || req.ClientID == "" {
			t.Fatalf("accepted %+v without grant_type or client_id", req)
		}
		if _, err := url.ParseQuery(form); err != nil {
			t.Fatalf("accepted a malformed form %q", form)
		}
	})
}

// FuzzQueryFlags: no panic; a refusal is a 4xx naming one parameter; an accepted flag was
// exactly "true" or "false" once.
func FuzzQueryFlags(f *testing.F) {
	for _, s := range []string{"authenticationInfo=true&authorizationInfo=false", "authenticationInfo=1", "%zz", "authorizationInfo=true&authorizationInfo=true", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.URL.RawQuery = raw
		q, err := invokerInfoQuery(r)
		if err != nil {
			wantClientError(t, err)
			return
		}
		values, _ := url.ParseQuery(raw)
		for name, got := range map[string]bool{"authenticationInfo": q.AuthenticationInfo, "authorizationInfo": q.AuthorizationInfo} {
			vs := values[name]
			if got && (len(vs) != 1 || vs[0] != "true") || len(vs) > 1 {
				t.Fatalf("%q: %s read as %v", raw, name, got)
			}
		}
	})
}

// FuzzCallerID: any certificate subject and any PEM input. No panic; an accepted identity is one
// usable id; VerifyPEM never accepts what the CA did not sign.
func FuzzCallerID(f *testing.F) {
	ca, err := devpki.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	issued, err := ca.Client("inv-1", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(issued.CertPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add(append(append([]byte{}, issued.CertPEM...), issued.CertPEM...))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	f.Fuzz(func(t *testing.T, pemBytes []byte) {
		cert, err := VerifyPEM(pemBytes, roots, nil, time.Now())
		if err != nil {
			return
		}
		id, err := CallerID(cert)
		if err != nil {
			return
		}
		if id == "" || len(id) > security.MaxIDLength || !utf8.ValidString(id) {
			t.Fatalf("unusable id %q accepted", id)
		}
		if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
			t.Fatalf("accepted a certificate the CA did not sign: %v", err)
		}
	})
}
