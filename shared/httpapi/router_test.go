package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/security"
)

// echoRouter has one route per pattern; each answers with its name and path values.
func echoRouter(t *testing.T) *Router {
	t.Helper()
	rt := &Router{log: &accessLog{logger: slog.New(slog.DiscardHandler), requestID: RandomRequestID}}
	echo := func(name string, params ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			out := []string{name}
			for _, p := range params {
				out = append(out, p+"="+r.PathValue(p))
			}
			_, _ = w.Write([]byte(strings.Join(out, " ")))
		}
	}
	rt.Handle(http.MethodPut, "/v1/items/{id}", "op", echo("put", "id"))
	rt.Handle(http.MethodGet, "/v1/items/{id}", "op", echo("get", "id"))
	rt.Handle(http.MethodPost, "/v1/items/{id}/update", "op", echo("update", "id"))
	rt.Handle(http.MethodPost, "/v1/pairs/{a}/x/{b}", "op", echo("pair", "a", "b"))
	return rt
}

func TestRouterMatches(t *testing.T) {
	rt := echoRouter(t)
	tests := []struct {
		method, target string
		want           string
	}{
		{"GET", "/v1/items/abc", "get id=abc"},
		{"PUT", "/v1/items/abc", "put id=abc"},
		{"GET", "/v1/items/a%2Fb", "get id=a/b"},
		{"GET", "/v1/items/a%2fb", "get id=a/b"},
		{"GET", "/v1/items/a%20b", "get id=a b"},
		{"GET", "/v1/items/a+b", "get id=a+b"},
		{"GET", "/v1/items/100%25", "get id=100%"},
		{"GET", "/v1/items/%E2%82%AC", "get id=€"},
		{"GET", "/v1/items/%2F%2F", "get id=//"},
		{"GET", "/v1/items/abc?x=1", "get id=abc"},
		{"POST", "/v1/items/a%2Fb/update", "update id=a/b"},
		{"POST", "/v1/pairs/1/x/2", "pair a=1 b=2"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, nil))
		if w.Code != 200 || w.Body.String() != tt.want {
			t.Errorf("%s %s: %d %q, want %q", tt.method, tt.target, w.Code, w.Body, tt.want)
		}
	}
}

func TestRouterNotFoundAndMethodNotAllowed(t *testing.T) {
	rt := echoRouter(t)
	tests := []struct {
		method, target string
		status         int
		allow          string
	}{
		{"GET", "/", 404, ""},
		{"GET", "/v1/items", 404, ""},
		{"GET", "/v1/items/a/b", 404, ""},
		{"GET", "/v1/items/a%2Fb/c", 404, ""},
		{"GET", "/v1/items//update", 404, ""},      // empty id
		{"GET", "/v1/items/abc/", 404, ""},         // a trailing slash is another resource
		{"GET", "/v1/Items/abc", 404, ""},          // literal segments are exact
		{"GET", "/v1/items/abc/%75pdate", 404, ""}, // an escaped literal is not the literal
		{"POST", "/v1/pairs/1/y/2", 404, ""},
		{"DELETE", "/v1/items/abc", 405, "GET, PUT"},
		{"PATCH", "/v1/items/a%2Fb", 405, "GET, PUT"},
		{"HEAD", "/v1/items/abc", 405, "GET, PUT"},
		{"GET", "/v1/items/abc/update", 405, "POST"},
		{"PUT", "/v1/pairs/1/x/2", 405, "POST"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, nil))
		if w.Code != tt.status || w.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tt.method, tt.target, w.Code, w.Header().Get("Allow"), tt.status, tt.allow)
			continue
		}
		cause := map[int]string{404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}[tt.status]
		problem(t, w, tt.status, cause)
	}
}

// The Lambda routers each serve their own operations; All serves every one.
func TestOperationRouters(t *testing.T) {
	s := newServer(t, nil)
	type probe struct{ method, path string }
	all := []probe{
		{"PUT", invokers + "x"}, {"POST", invokers + "x/update"}, {"GET", invokers + "x"}, {"DELETE", invokers + "x"},
		{"POST", invokers + "x/delete"}, {"POST", Base + "/securities/x/token"}, {"GET", "/.well-known/jwks.json"},
		{"GET", MetadataPath},
	}
	tests := []struct {
		name  string
		build func(*testServer) *Router
		serve []probe
		allow map[string]string // path → Allow for the other methods
	}{
		{"ObtainSecurityMethod", func(s *testServer) *Router { return ObtainSecurityMethod(s.svc, s.opts) }, all[0:2], map[string]string{invokers + "x": "PUT", invokers + "x/update": "POST"}},
		{"ObtainAPIInvokerInfo", func(s *testServer) *Router { return ObtainAPIInvokerInfo(s.svc, s.opts) }, all[2:3], map[string]string{invokers + "x": "GET"}},
		{"RevokeAuthorization", func(s *testServer) *Router { return RevokeAuthorization(s.svc, s.opts) }, all[3:5], map[string]string{invokers + "x": "DELETE", invokers + "x/delete": "POST"}},
		{"ObtainAuthorization", func(s *testServer) *Router { return ObtainAuthorization(s.svc, s.opts) }, all[5:8], map[string]string{Base + "/securities/x/token": "POST", "/.well-known/jwks.json": "GET", MetadataPath: "GET"}},
		{"All", func(s *testServer) *Router { return All(s.svc, s.opts) }, all, map[string]string{invokers + "x": "DELETE, GET, PUT", invokers + "x/update": "POST", "/.well-known/jwks.json": "GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := tt.build(s)
			for _, p := range all {
				w := httptest.NewRecorder()
				rt.ServeHTTP(w, httptest.NewRequest(p.method, p.path, nil))
				served := slices.Contains(tt.serve, p)
				switch {
				case served && (w.Code == 404 && w.Body.Len() > 0 && strings.Contains(w.Body.String(), "RESOURCE_NOT_FOUND") || w.Code == 405):
					t.Errorf("%s %s not served: %d", p.method, p.path, w.Code)
				case !served && w.Code != 404 && w.Code != 405:
					t.Errorf("%s %s served: %d", p.method, p.path, w.Code)
				}
			}
			for path, allow := range tt.allow {
				w := httptest.NewRecorder()
				rt.ServeHTTP(w, httptest.NewRequest("PATCH", path, nil))
				if w.Code != 405 || w.Header().Get("Allow") != allow {
					t.Errorf("PATCH %s: %d Allow %q, want 405 %q", path, w.Code, w.Header().Get("Allow"), allow)
				}
			}
		})
	}
}

// The route table: every operation of the API and the JWKS, each on its TS 29.222 path.
func TestRoutes(t *testing.T) {
	rt := All(security.New(nil, nil, nil, nil, nil, security.Config{}), Options{})
	want := map[string]string{
		"PUT " + Base + "/trustedInvokers/{apiInvokerId}":         security.ObtainSecurityMethod.String(),
		"POST " + Base + "/trustedInvokers/{apiInvokerId}/update": security.ObtainSecurityMethod.String(),
		"POST " + Base + "/securities/{securityId}/token":         security.ObtainAuthorization.String(),
		"GET /.well-known/jwks.json":                              NameJWKS,
		"GET " + Base + "/trustedInvokers/{apiInvokerId}":         security.ObtainAPIInvokerInfo.String(),
		"DELETE " + Base + "/trustedInvokers/{apiInvokerId}":      security.RevokeAuthorization.String(),
		"POST " + Base + "/trustedInvokers/{apiInvokerId}/delete": security.RevokeAuthorization.String(),
	}
	got := map[string]string{}
	for _, r := range rt.Routes() {
		got[r.Method+" "+r.Path] = r.Operation
	}
	for k, op := range want {
		if got[k] != op {
			t.Errorf("%s: operation %q, want %q", k, got[k], op)
		}
	}
	for _, tc := range []struct{ method, path, op string }{
		{"PUT", Base + "/trustedInvokers/a%2Fb", security.ObtainSecurityMethod.String()},
		{"GET", Base + "/trustedInvokers/a/", ""},
		{"PATCH", Base + "/trustedInvokers/a", ""},
		{"POST", Base + "/securities/x/token", security.ObtainAuthorization.String()},
	} {
		if got := rt.Operation(tc.method, tc.path); got != tc.op {
			t.Errorf("Operation(%s %s) = %q, want %q", tc.method, tc.path, got, tc.op)
		}
	}
}
