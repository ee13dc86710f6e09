package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"

	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/embedded"
)

// metadataServer is an ObtainAuthorization router for a CCF with the given issuer and {apiRoot}.
func metadataServer(t *testing.T, issuer, root string) (http.Handler, *bytes.Buffer) {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "capif.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	logs := &bytes.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	svc := security.New(db, db, &securitytest.Signer{}, &securitytest.Notifier{}, nil, security.Config{Issuer: issuer, APIRoot: root, Logger: logger})
	return ObtainAuthorization(svc, Options{APIRoot: root, Logger: logger}), logs
}

func TestMetadataDocument(t *testing.T) {
	h, logs := metadataServer(t, "https://ccf.example.com:8443", "https://ccf.example.com:8443")
	// No client certificate: the document is public, like the JWKS.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, MetadataPath, nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("metadata: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                     "https://ccf.example.com:8443",
		"jwks_uri":                                   "https://ccf.example.com:8443/.well-known/jwks.json",
		"response_types_supported":                   []any{},
		"grant_types_supported":                      []any{"client_credentials"},
		"token_endpoint_auth_methods_supported":      []any{"tls_client_auth", "client_secret_basic", "client_secret_post"},
		"tls_client_certificate_bound_access_tokens": true,
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(got)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("metadata\n got %s\nwant %s", gotJSON, wantJSON)
	}
	// token_endpoint is left out on purpose (its path holds the invoker's id): see Metadata.
	if _, ok := got["token_endpoint"]; ok {
		t.Error("token_endpoint is published")
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &line); err != nil || line["operation"] != NameMetadata || line["caller"] != "" {
		t.Errorf("access log %s (%v)", logs, err)
	}
}

// The RFC 8414 §3.1 path form is served when the issuer or {apiRoot} has a path, and only then.
func TestMetadataPaths(t *testing.T) {
	tests := []struct {
		name, issuer, root string
		serve, refuse      []string
		jwksURI            string
	}{
		{name: "no path", issuer: "https://ccf.example.com", root: "https://ccf.example.com", serve: []string{MetadataPath}, refuse: []string{MetadataPath + "/", MetadataPath + "/x", "/.well-known/openid-configuration"}, jwksURI: "https://ccf.example.com/.well-known/jwks.json"},
		{name: "apiRoot with a path", issuer: "https://gw.example.com/prod/ccf", root: "https://gw.example.com/prod/ccf/", serve: []string{MetadataPath, MetadataPath + "/prod/ccf"}, refuse: []string{MetadataPath + "/prod", MetadataPath + "/prod/ccf/x"}, jwksURI: "https://gw.example.com/prod/ccf/.well-known/jwks.json"},
		{name: "issuer not a URL (CCF id)", issuer: "ccf-1", root: "https://gw.example.com/stage", serve: []string{MetadataPath, MetadataPath + "/stage"}, refuse: []string{MetadataPath + "/ccf-1"}, jwksURI: "https://gw.example.com/stage/.well-known/jwks.json"},
		{name: "issuer and apiRoot differ", issuer: "https://id.example.com/tenant%201", root: "https://gw.example.com/stage", serve: []string{MetadataPath, MetadataPath + "/tenant%201", MetadataPath + "/stage"}, refuse: []string{MetadataPath + "/tenant"}, jwksURI: "https://gw.example.com/stage/.well-known/jwks.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := metadataServer(t, tt.issuer, tt.root)
			for _, p := range tt.serve {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
				var m Metadata
				if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &m) != nil {
					t.Errorf("GET %s: %d %s", p, w.Code, w.Body)
					continue
				}
				if m.Issuer != tt.issuer || m.JWKSURI != tt.jwksURI {
					t.Errorf("GET %s: issuer %q jwks_uri %q", p, m.Issuer, m.JWKSURI)
				}
				w = httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, p, nil))
				if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET" {
					t.Errorf("POST %s: %d Allow %q", p, w.Code, w.Header().Get("Allow"))
				}
			}
			for _, p := range tt.refuse {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
				if w.Code != http.StatusNotFound {
					t.Errorf("GET %s: %d, want 404", p, w.Code)
				}
			}
		})
	}
}

func TestMetadataPathsUnique(t *testing.T) {
	got := metadataPaths("https://a.example.com/x/", "https://b.example.com/x")
	if !slices.Equal(got, []string{MetadataPath, MetadataPath + "/x"}) {
		t.Errorf("metadataPaths %q", got)
	}
}
