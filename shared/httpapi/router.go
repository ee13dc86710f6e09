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
	pattern   []segment
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
	path := strings.TrimPrefix(escapedPath, "/")
	for _, ro := range rt.routes {
		if _, ok := match(ro.pattern, path); ok && ro.method == method {
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
	var segs []segment
	for _, p := range strings.Split(strings.Trim(pattern, "/"), "/") {
		if name, ok := strings.CutPrefix(p, "{"); ok {
			segs = append(segs, segment{param: strings.TrimSuffix(name, "}")})
		} else {
			segs = append(segs, segment{literal: p})
		}
	}
	rt.routes = append(rt.routes, route{method: method, path: pattern, pattern: segs, operation: operation, handle: h})
}

// Mount adds every route of other (the local runner serves all operations from one Router).
func (rt *Router) Mount(other *Router) {
	rt.routes = append(rt.routes, other.routes...)
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only the leading slash goes: "…/x/" has an empty last segment and matches no route.
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	var allow []string
	for _, ro := range rt.routes {
		ps, ok := match(ro.pattern, path)
		if !ok {
			continue
		}
		if ro.method != r.Method {
			if !slices.Contains(allow, ro.method) {
				allow = append(allow, ro.method)
			}
			continue
		}
		rt.log.serve(w, r, ro.operation, ps, ro.handle)
		return
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		rt.log.serve(w, r, "", params{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, http.StatusMethodNotAllowed, CauseMethodNotAllowed, "method "+r.Method+" is not allowed here", nil)
		})
		return
	}
	rt.log.serve(w, r, "", params{}, func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, CauseNoSuchResource, "no such resource", nil)
	})
}

// params are the {name} segments of a matched path, unescaped (a route has at most two). The
// handlers read them with pathValue: kept in the request's exchange, they cost none of
// http.Request.SetPathValue's allocations.
type params struct {
	list [2]struct{ name, value string }
	n    int
}

// pathValue is the {name} segment of r's route, "" if it has none.
func pathValue(r *http.Request, name string) string {
	ps := &infoOf(r).params
	for _, p := range ps.list[:ps.n] {
		if p.name == name {
			return p.value
		}
	}
	return ""
}

// segment is one segment of a route's pattern: a literal, or a {param}'s name.
type segment struct{ literal, param string }

// match matches path (escaped, without its leading slash) segment by segment against pattern,
// without splitting it: a {param} segment takes any non-empty segment that unescapes.
func match(pattern []segment, path string) (ps params, ok bool) {
	for i, p := range pattern {
		seg, rest, more := strings.Cut(path, "/")
		if more != (i < len(pattern)-1) {
			return ps, false // fewer or more segments than the pattern
		}
		path = rest
		if p.param == "" {
			if p.literal != seg {
				return ps, false
			}
			continue
		}
		v, err := url.PathUnescape(seg)
		if err != nil || v == "" || ps.n == len(ps.list) {
			return ps, false
		}
		ps.list[ps.n].name, ps.list[ps.n].value = p.param, v
		ps.n++
	}
	return ps, true
}
