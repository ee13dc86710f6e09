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
// as problem+json. Every request it serves, routed or not, ends in its access log (log.go): one
// line, with the status the client got, a panic included.
type Router struct {
	routes []route
	log    *accessLog
	admit  func(*http.Request) (*http.Request, error)
}

// Handle adds the route method pattern, served by h under operation (the access line's member
// and metrics dimension). A "{name}" segment of pattern matches one non-empty escaped path
// segment, which h reads unescaped as r.PathValue(name).
func (rt *Router) Handle(method, pattern, operation string, h http.HandlerFunc) {
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
	rt.log.serve(w, r, rt.route)
}

// ServeError answers r with err through the one error mapping and the access log, without
// routing it: a request the process could not turn into one it can route (a Lambda event the
// proxy cannot convert).
func (rt *Router) ServeError(w http.ResponseWriter, r *http.Request, err error) {
	rt.log.serve(w, r, func(w http.ResponseWriter, r *http.Request) { writeError(w, r, err) })
}

// route admits r (Options.Admit), then hands it to its route's handler with the path values set.
func (rt *Router) route(w http.ResponseWriter, r *http.Request) {
	if rt.admit != nil {
		next, err := rt.admit(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		r = next
	}
	// Only the leading slash goes: "…/x/" has an empty last segment and matches no route.
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	var allow []string
	for _, ro := range rt.routes {
		values, ok := match(ro.pattern, path)
		if !ok {
			continue
		}
		if ro.method != r.Method {
			if !slices.Contains(allow, ro.method) {
				allow = append(allow, ro.method)
			}
			continue
		}
		infoOf(r).operation = ro.operation
		for i, seg := range ro.pattern {
			if seg.param != "" {
				r.SetPathValue(seg.param, values[i])
			}
		}
		ro.handle(w, r)
		return
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, http.StatusMethodNotAllowed, CauseMethodNotAllowed, "method "+r.Method+" is not allowed here", nil)
		return
	}
	writeProblem(w, http.StatusNotFound, CauseNoSuchResource, "no such resource", nil)
}

// segment is one segment of a route's pattern: a literal, or a {param}'s name.
type segment struct{ literal, param string }

// match matches path (escaped, without its leading slash) segment by segment against pattern:
// a {param} segment takes any non-empty segment that unescapes. values holds the unescaped
// value of each {param} segment, by its index in pattern.
func match(pattern []segment, path string) (values []string, ok bool) {
	for i, p := range pattern {
		seg, rest, more := strings.Cut(path, "/")
		if more != (i < len(pattern)-1) {
			return nil, false // fewer or more segments than the pattern
		}
		path = rest
		if p.param == "" {
			if p.literal != seg {
				return nil, false
			}
			continue
		}
		v, err := url.PathUnescape(seg)
		if err != nil || v == "" {
			return nil, false
		}
		if values == nil {
			values = make([]string, len(pattern))
		}
		values[i] = v
	}
	return values, true
}
