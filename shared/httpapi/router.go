// Package httpapi serves the CAPIF_Security_API over net/http: one http.Handler per service
// operation (each Lambda wraps one with aws-lambda-go-api-proxy; the local runner mounts all),
// sharing one identity function, one decoder, one error mapping and one access log.
package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Base is the path prefix of the API below {apiRoot}.
const Base = "/capif-security/v1"

// route is one method + path pattern; "{name}" segments match one escaped path segment.
type route struct {
	method    string
	path      string
	pattern   []string
	operation string
	handle    http.HandlerFunc
}

// Route is one route a Router serves: what the template's API events and the tests check
// against, so the route table exists once.
type Route struct {
	Method    string
	Path      string // "{name}" stands for one escaped path segment
	Operation string
}

// Routes lists the routes of rt in the order they match.
func (rt *Router) Routes() []Route {
	out := make([]Route, 0, len(rt.routes))
	for _, ro := range rt.routes {
		out = append(out, Route{Method: ro.method, Path: ro.path, Operation: ro.operation})
	}
	return out
}

// Operation is the operation a request would be routed to, "" for none (404 or 405).
func (rt *Router) Operation(method, escapedPath string) string {
	segs := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	for _, ro := range rt.routes {
		if _, ok := match(ro.pattern, segs); ok && ro.method == method {
			return ro.operation
		}
	}
	return ""
}

// Router matches routes on the escaped path, so ids containing "%2F" or spaces stay one segment,
// and answers unknown paths with 404 and known paths with another method with 405 + Allow, both
// as problem+json.
type Router struct {
	routes []route
	log    *accessLog
}

func (rt *Router) add(method, pattern, operation string, h http.HandlerFunc) {
	rt.routes = append(rt.routes, route{method: method, path: pattern, pattern: strings.Split(strings.Trim(pattern, "/"), "/"), operation: operation, handle: h})
}

// Mount adds every route of other (the local runner serves all operations from one Router).
func (rt *Router) Mount(other *Router) {
	rt.routes = append(rt.routes, other.routes...)
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only the leading slash goes: "…/x/" has an empty last segment and matches no route.
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	var allow []string
	for _, ro := range rt.routes {
		params, ok := match(ro.pattern, segs)
		if !ok {
			continue
		}
		if ro.method != r.Method {
			if !slices.Contains(allow, ro.method) {
				allow = append(allow, ro.method)
			}
			continue
		}
		for k, v := range params {
			r.SetPathValue(k, v)
		}
		rt.log.serve(w, r, ro.operation, ro.handle)
		return
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		rt.log.serve(w, r, "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, http.StatusMethodNotAllowed, CauseMethodNotAllowed, "method "+r.Method+" is not allowed here", nil)
		})
		return
	}
	rt.log.serve(w, r, "", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, CauseNoSuchResource, "no such resource", nil)
	})
}

func match(pattern, segs []string) (map[string]string, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	var params map[string]string
	for i, p := range pattern {
		if name, ok := strings.CutPrefix(p, "{"); ok {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			if params == nil {
				params = map[string]string{}
			}
			params[strings.TrimSuffix(name, "}")] = v
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return params, true
}
