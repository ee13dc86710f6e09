// Package apigwevent builds API Gateway REST proxy events (payload 1.0, as delivered through a
// custom domain with mutual TLS and an empty base path) for tests and for the events/ files.
package apigwevent

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// Request is one API request as the REST proxy integration delivers it.
type Request struct {
	Method   string
	Resource string            // the API's resource path, e.g. /capif-security/v1/trustedInvokers/{apiInvokerId}
	Params   map[string]string // path parameter values (unescaped)
	// RawPath, when set, is sent as the path instead of Resource with the escaped Params.
	RawPath string
	Query   url.Values
	Header  map[string][]string
	Body    string
	Base64  bool // the body is base64 (set by the caller, e.g. to test a broken encoding)
	// ClientCertPEM is the certificate API Gateway's mutual TLS verified; empty: none.
	ClientCertPEM string
	RequestID     string
	DomainName    string // default capif.example.com
	Stage         string // default live
	Time          time.Time
}

// Path is the request path as the client sent it: Resource with each {param} replaced by its
// percent-escaped value (API Gateway REST APIs deliver the path still escaped).
func (r Request) Path() (string, error) {
	if r.RawPath != "" {
		return r.RawPath, nil
	}
	segs := strings.Split(r.Resource, "/")
	for i, s := range segs {
		name, ok := strings.CutPrefix(s, "{")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, "}")
		v, ok := r.Params[name]
		if !ok {
			return "", fmt.Errorf("apigwevent: no value for path parameter %q of %s", name, r.Resource)
		}
		segs[i] = url.PathEscape(v)
	}
	return strings.Join(segs, "/"), nil
}

// Event renders the request as the event API Gateway sends to the function.
func (r Request) Event() (events.APIGatewayProxyRequest, error) {
	path, err := r.Path()
	if err != nil {
		return events.APIGatewayProxyRequest{}, err
	}
	domain := r.DomainName
	if domain == "" {
		domain = "capif.example.com"
	}
	stage := r.Stage
	if stage == "" {
		stage = "live"
	}
	at := r.Time
	if at.IsZero() {
		at = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	ev := events.APIGatewayProxyRequest{
		Resource:   r.Resource,
		Path:       path,
		HTTPMethod: r.Method,
		Body:       r.Body,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:        "123456789012",
			ResourceID:       "abc123",
			Stage:            stage,
			DomainName:       domain,
			DomainPrefix:     strings.SplitN(domain, ".", 2)[0],
			RequestID:        r.RequestID,
			Protocol:         "HTTP/1.1",
			ResourcePath:     r.Resource,
			Path:             path, // empty base path mapping: no stage or base path prefix
			HTTPMethod:       r.Method,
			RequestTime:      at.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			RequestTimeEpoch: at.UnixMilli(),
			APIID:            "a1b2c3d4e5",
			Identity:         events.APIGatewayRequestIdentity{SourceIP: "198.51.100.7", UserAgent: "curl/8.5.0"},
		},
		IsBase64Encoded: r.Base64,
	}
	if len(r.Params) > 0 {
		ev.PathParameters = map[string]string{}
		for k, v := range r.Params {
			ev.PathParameters[k] = v
		}
	}
	header := map[string][]string{"Host": {domain}, "User-Agent": {"curl/8.5.0"}, "X-Forwarded-Proto": {"https"}}
	for k, v := range r.Header {
		header[k] = v
	}
	ev.Headers, ev.MultiValueHeaders = map[string]string{}, map[string][]string{}
	for k, v := range header {
		ev.MultiValueHeaders[k] = v
		ev.Headers[k] = v[len(v)-1]
	}
	if len(r.Query) > 0 {
		ev.QueryStringParameters, ev.MultiValueQueryStringParameters = map[string]string{}, map[string][]string{}
		for k, v := range r.Query {
			ev.MultiValueQueryStringParameters[k] = v
			ev.QueryStringParameters[k] = v[len(v)-1]
		}
	}
	if r.ClientCertPEM != "" {
		cc, err := ClientCert(r.ClientCertPEM)
		if err != nil {
			return events.APIGatewayProxyRequest{}, err
		}
		ev.RequestContext.Identity.ClientCert = cc
	}
	return ev, nil
}

// ClientCert is the requestContext.identity.clientCert block API Gateway's mutual TLS adds for a
// verified client certificate.
func ClientCert(certPEM string) (*events.APIGatewayCustomAuthorizerRequestTypeRequestIdentityClientCert, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("apigwevent: the client certificate is not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	const gmt = "Jan _2 15:04:05 2006 GMT"
	serial := fmt.Sprintf("%x", c.SerialNumber)
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	var pairs []string
	for i := 0; i < len(serial); i += 2 {
		pairs = append(pairs, serial[i:i+2])
	}
	return &events.APIGatewayCustomAuthorizerRequestTypeRequestIdentityClientCert{
		ClientCertPem: certPEM,
		SubjectDN:     c.Subject.String(),
		IssuerDN:      c.Issuer.String(),
		SerialNumber:  strings.Join(pairs, ":"),
		Validity: events.APIGatewayCustomAuthorizerRequestTypeRequestIdentityClientCertValidity{
			NotBefore: c.NotBefore.UTC().Format(gmt),
			NotAfter:  c.NotAfter.UTC().Format(gmt),
		},
	}, nil
}

// EncodeBody base64-encodes a body (for Request.Body with Base64 set).
func EncodeBody(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
