package httpapi

import "net/http"

// ServeUnwired answers a request that reached no operation because the process's own set-up
// failed (a Lambda function could not read its truststore). err goes through the one error
// mapping (ErrUnavailable or the deadline: 503 with Retry-After; anything else: a logged 500)
// and the request gets its access-log line, like any request a Router serves.
func ServeUnwired(opts Options, w http.ResponseWriter, r *http.Request, err error) {
	rt, _ := newRouter(nil, opts)
	rt.log.serve(w, r, "", params{}, func(w http.ResponseWriter, r *http.Request) { writeError(w, r, err) })
}
