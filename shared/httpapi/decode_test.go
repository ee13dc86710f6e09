package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
)

func bodyRequest(contentType, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func asError(t *testing.T, err error) *requestError {
	t.Helper()
	var e *requestError
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *requestError", err, err)
	}
	return e
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		kind        int    // status; 0: decodes
		pointer     string // the invalidParams pointer, if any
	}{
		{"valid", "application/json", `{"notificationDestination":"https://x.example.com","securityInfo":[]}`, 0, ""},
		{"charset parameter", "application/json; charset=utf-8", `{}`, 0, ""},
		{"media type case", "Application/JSON", `{}`, 0, ""},
		{"unknown members ignored", "application/json", `{"foo":{"bar":[1,2]},"securityInfo":[{"x":1}]}`, 0, ""},
		{"surrounding whitespace", "application/json", " \n\t{}\r\n ", 0, ""},
		{"no content type", "", `{}`, 415, "Content-Type"},
		{"text/plain", "text/plain", `{}`, 415, "Content-Type"},
		{"problem+json", "application/problem+json", `{}`, 415, "Content-Type"},
		{"form", "application/x-www-form-urlencoded", `a=b`, 415, "Content-Type"},
		{"unparsable content type", "application/json; =", `{}`, 415, "Content-Type"},
		{"exactly 1 MiB", "application/json", `{"x":"` + strings.Repeat("a", MaxBody-8) + `"}`, 0, ""},
		{"over 1 MiB", "application/json", `{"x":"` + strings.Repeat("a", MaxBody) + `"}`, 413, ""},
		{"empty body", "application/json", ``, 400, ""},
		{"malformed", "application/json", `{"securityInfo":[}`, 400, ""},
		{"truncated", "application/json", `{"securityInfo":[`, 400, ""},
		{"trailing object", "application/json", `{} {}`, 400, ""},
		{"trailing garbage", "application/json", `{}x`, 400, ""},
		{"trailing bracket", "application/json", `{}]`, 400, ""},
		{"trailing brace", "application/json", `{"securityInfo":[]}}`, 400, ""},
		{"trailing comma", "application/json", `{},`, 400, ""},
		{"top-level array", "application/json", `[]`, 400, ""},
		{"top-level string", "application/json", `"x"`, 400, ""},
		{"string for a string array", "application/json", `{"securityInfo":[{},{"prefSecurityMethods":"PSK"}]}`, 400, "/securityInfo/1/prefSecurityMethods"},
		{"number in a string array", "application/json", `{"securityInfo":[{"prefSecurityMethods":["PSK"]},{"prefSecurityMethods":["PKI",7]}]}`, 400, "/securityInfo/1/prefSecurityMethods/1"},
		{"object in a string array", "application/json", `{"securityInfo":[{"prefSecurityMethods":["PKI",{"a":[1]}]}]}`, 400, "/securityInfo/0/prefSecurityMethods/1"},
		{"string for a port", "application/json", `{"securityInfo":[{"aefId":"a"},{"interfaceDetails":{"fqdn":"x.example.com","port":"443"}}]}`, 400, "/securityInfo/1/interfaceDetails/port"},
		{"fraction for a port", "application/json", `{"securityInfo":[{"interfaceDetails":{"port":1.5}}]}`, 400, "/securityInfo/0/interfaceDetails/port"},
		{"array for an object", "application/json", `{"securityInfo":[{"interfaceDetails":[1,2]}]}`, 400, "/securityInfo/0/interfaceDetails"},
		{"object for an array", "application/json", `{"securityInfo":{"0":{}}}`, 400, "/securityInfo"},
		{"string for a boolean", "application/json", `{"requestTestNotification":"true"}`, 400, "/requestTestNotification"},
		{"number for a string", "application/json", `{"notificationDestination":42}`, 400, "/notificationDestination"},
		{"member name in other case", "application/json", `{"SecurityInfo":[{"AefId":1}]}`, 400, "/SecurityInfo/0/AefId"},
		{"spaces everywhere", "application/json", "{ \"securityInfo\" : [ { } ,\n { \"prefSecurityMethods\" : [ \"PKI\" , 7 ] } ] }", 400, "/securityInfo/1/prefSecurityMethods/1"},
		{"spaces around a wrong array", "application/json", `{"securityInfo":[ {"interfaceDetails": [ 1 , 2 ] } ]}`, 400, "/securityInfo/0/interfaceDetails"},
		{"first element wrong", "application/json", `{"securityInfo":[{"prefSecurityMethods":[7,"PKI"]},{"prefSecurityMethods":[8]}]}`, 400, "/securityInfo/0/prefSecurityMethods/0"},
		{"the earliest of two errors", "application/json", `{"securityInfo":[{"aefId":"a"},{"aefId":true},{"aefId":1}]}`, 400, "/securityInfo/1/aefId"},
		{"unknown members around", "application/json", `{"x":[{"prefSecurityMethods":1}],"securityInfo":[{"y":{"aefId":2}},{"aefId":3}]}`, 400, "/securityInfo/1/aefId"},
		{"nested websocket config", "application/json", `{"websockNotifConfig":{"requestWebsocketUri":1}}`, 400, "/websockNotifConfig/requestWebsocketUri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v capif.ServiceSecurity
			err := decodeJSON(bodyRequest(tt.contentType, tt.body), &v)
			if tt.kind == 0 {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				return
			}
			e := asError(t, err)
			if e.status != tt.kind {
				t.Errorf("kind %d, want %d (%v)", e.status, tt.kind, e)
			}
			if e.oauth != "" {
				t.Errorf("a JSON body error carries OAuth error %q", e.oauth)
			}
			switch {
			case tt.pointer == "" && len(e.params) > 0:
				t.Errorf("invalid params %+v, want none", e.params)
			case tt.pointer != "" && (len(e.params) != 1 || e.params[0].Param != tt.pointer):
				t.Errorf("invalid params %+v, want %s", e.params, tt.pointer)
			}
		})
	}
}

func TestDecodeJSONPointerEscapes(t *testing.T) {
	// A member name with '/' or '~' is escaped in the pointer (RFC 6901).
	var v struct {
		A []struct {
			X int `json:"x"`
		} `json:"a/b~c"`
	}
	err := decodeJSON(bodyRequest("application/json", `{"a/b~c":[{"x":1},{"x":"y"}]}`), &v)
	e := asError(t, err)
	if len(e.params) != 1 || e.params[0].Param != "/a~1b~0c/1/x" {
		t.Errorf("invalid params %+v", e.params)
	}
}

func TestDecodeTokenRequest(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		contentType string
		body        string
		want        capif.AccessTokenReq
		kind        int
		oauth       string
		mention     string
	}{
		{name: "minimal", contentType: form, body: "grant_type=client_credentials&client_id=inv1", want: capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv1"}},
		{name: "everything", contentType: form + "; charset=UTF-8", body: "grant_type=client_credentials&client_id=inv%201&client_secret=s%2Bx&scope=3gpp%23aef1%3Aa%2Cb%3Baef2%3Ac&resOwnerId=ue1&authCode=c0de&extra=ignored", want: capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv 1", ClientSecret: "s+x", Scope: "3gpp#aef1:a,b;aef2:c", ResOwnerID: "ue1", AuthCode: "c0de"}},
		{name: "Rel-19 resOwnerId as JSON text", contentType: form, body: "grant_type=client_credentials&client_id=inv1&resOwnerId=%7B%22gpsi%22%3A%22msisdn-491701234567%22%7D", want: capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv1", ResOwnerID: `{"gpsi":"msisdn-491701234567"}`}},
		{name: "Rel-19 resOwnerId[gpsi] and redirect_uri are ignored", contentType: form, body: "grant_type=client_credentials&client_id=inv1&resOwnerId%5Bgpsi%5D=msisdn-1&resOwnerId%5Bgpsi%5D=msisdn-2&redirect_uri=https%3A%2F%2Finv.example.com%2Fcb&redirect_uri=x", want: capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv1"}},
		{name: "Rel-19 authorization_code decodes (the domain refuses it)", contentType: form, body: "grant_type=authorization_code&client_id=inv1&authCode=c0de&redirect_uri=https%3A%2F%2Finv.example.com%2Fcb", want: capif.AccessTokenReq{GrantType: "authorization_code", ClientID: "inv1", AuthCode: "c0de"}},
		{name: "plus is a space", contentType: form, body: "grant_type=client_credentials&client_id=a+b", want: capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "a b"}},
		{name: "JSON body", contentType: "application/json", body: `{"grant_type":"client_credentials"}`, want: capif.AccessTokenReq{}, kind: 415},
		{name: "no content type", body: "grant_type=client_credentials&client_id=inv1", want: capif.AccessTokenReq{}, kind: 415},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: "--x--", want: capif.AccessTokenReq{}, kind: 415},
		{name: "too large", contentType: form, body: "grant_type=client_credentials&client_id=inv1&scope=" + strings.Repeat("a", MaxBody), want: capif.AccessTokenReq{}, kind: 413},
		{name: "missing grant_type", contentType: form, body: "client_id=inv1", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "grant_type"},
		{name: "empty grant_type", contentType: form, body: "grant_type=&client_id=inv1", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "grant_type"},
		{name: "missing client_id", contentType: form, body: "grant_type=client_credentials", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "client_id"},
		{name: "empty body", contentType: form, want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "grant_type"},
		{name: "repeated grant_type", contentType: form, body: "grant_type=client_credentials&grant_type=client_credentials&client_id=inv1", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "grant_type"},
		{name: "repeated scope", contentType: form, body: "grant_type=client_credentials&client_id=inv1&scope=a&scope=b", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "scope"},
		{name: "repeated client_secret", contentType: form, body: "grant_type=client_credentials&client_id=inv1&client_secret=a&client_secret=a", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest, mention: "client_secret"},
		{name: "bad escape", contentType: form, body: "grant_type=client_credentials&client_id=inv%zz", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest},
		{name: "semicolon separator", contentType: form, body: "grant_type=client_credentials;client_id=inv1", want: capif.AccessTokenReq{}, kind: 400, oauth: capif.InvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeTokenRequest(bodyRequest(tt.contentType, tt.body))
			if tt.kind == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("decoded %+v, want %+v", got, tt.want)
				}
				return
			}
			e := asError(t, err)
			if e.status != tt.kind || e.oauth != tt.oauth {
				t.Errorf("kind %d oauth %q, want %d %q (%v)", e.status, e.oauth, tt.kind, tt.oauth, e)
			}
			if !strings.Contains(e.detail, tt.mention) {
				t.Errorf("detail %q does not mention %q", e.detail, tt.mention)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadBodyFailure(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/x", failingReader{})
	r.Header.Set("Content-Type", "application/json")
	var v capif.ServiceSecurity
	if e := asError(t, decodeJSON(r, &v)); e.status != 400 {
		t.Errorf("kind %d", e.status)
	}
	r = httptest.NewRequest(http.MethodPost, "/x", failingReader{})
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, err := decodeTokenRequest(r)
	if e := asError(t, err); e.status != 400 || e.oauth != capif.InvalidRequest {
		t.Errorf("token: %+v", e)
	}
}

func TestQueryFlag(t *testing.T) {
	tests := []struct {
		query string
		want  bool
		bad   bool
	}{
		{"", false, false},
		{"f=true", true, false},
		{"f=false", false, false},
		{"other=true", false, false},
		{"f=TRUE", false, true},
		{"f=True", false, true},
		{"f=1", false, true},
		{"f=yes", false, true},
		{"f=", false, true},
		{"f", false, true},
		{"f=true&f=true", false, true},
		{"f=true&f=false", false, true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := queryFlag(q, "f")
		if tt.bad {
			e := asError(t, err)
			if e.status != 400 || len(e.params) != 1 || e.params[0].Param != "f" {
				t.Errorf("%q: error %+v", tt.query, e)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %v, %v; want %v", tt.query, got, err, tt.want)
		}
	}
}

func TestAcceptsJSON(t *testing.T) {
	tests := map[string]bool{
		"":                                   true,
		"   ":                                true,
		"application/json":                   true,
		"Application/JSON":                   true,
		"application/json; charset=utf-8":    true,
		"*/*":                                true,
		"application/*":                      true,
		"text/html, application/json;q=0.9":  true,
		"text/html;q=0, */*;q=0.1":           true,
		"text/html":                          false,
		"application/xml":                    false,
		"application/problem+json":           false,
		"text/*":                             false,
		"application/json;q=0":               false,
		"application/json;q=0.000, text/csv": false,
		"*/*;q=0":                            false,
		"garbage;;;":                         false,
	}
	for accept, want := range tests {
		if got := acceptsJSON(accept); got != want {
			t.Errorf("acceptsJSON(%q) = %v, want %v", accept, got, want)
		}
	}
}

// When the walk finds nothing (it cannot, for a type error encoding/json reported on the same
// body), the member names of Field alone make the pointer.
func TestTypeErrorPointerFallback(t *testing.T) {
	tests := []struct {
		body  string
		field string
		off   int64
		want  string
	}{
		{`{"a":[{"b":1}]}`, "a.b", 12, "/a/0/b"},
		{`{"a":[{"b":1}]}`, "a.c", 12, "/a/c"},
		{`{"a":[{"b":1}]}`, "a.b", 100, "/a/b"},
		{`{"a":[{"b":1}`, "a.b", 12, "/a/0/b"}, // not well-formed: what was walked
		{`{"a~/":1}`, "a~/", 8, "/a~0~1"},
	}
	for _, tt := range tests {
		te := &json.UnmarshalTypeError{Field: tt.field, Offset: tt.off}
		if got := pointerAt([]byte(tt.body), te.Offset, te.Field); got != tt.want {
			t.Errorf("pointerAt(%s, %q@%d) = %q, want %q", tt.body, tt.field, tt.off, got, tt.want)
		}
	}
}

func TestTypeMismatchReason(t *testing.T) {
	tests := []struct{ body, reason string }{
		{`{"securityInfo":[{"interfaceDetails":{"port":1.5}}]}`, "must be an integer, not number 1.5"},
		{`{"securityInfo":[{"interfaceDetails":{"port":"80"}}]}`, "must be an integer, not string"},
		{`{"securityInfo":[{"interfaceDetails":true}]}`, "must be an object, not bool"},
		{`{"securityInfo":[{"prefSecurityMethods":{}}]}`, "must be an array, not object"},
		{`{"securityInfo":[{"aefId":[]}]}`, "must be a string, not array"},
		{`{"requestTestNotification":0}`, "must be a boolean, not number"},
	}
	for _, tt := range tests {
		var v capif.ServiceSecurity
		e := asError(t, decodeJSON(bodyRequest("application/json", tt.body), &v))
		if len(e.params) != 1 || e.params[0].Reason != tt.reason {
			t.Errorf("%s: %+v, want reason %q", tt.body, e.params, tt.reason)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

type slowReader struct{}

func (slowReader) Read([]byte) (int, error) { return 0, timeoutErr{} }

// A body slower than the server's read timeout is 408, a client fault like a broken one.
func TestSlowBodyIs408(t *testing.T) {
	for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
		r := httptest.NewRequest(http.MethodPost, "/x", slowReader{})
		r.Header.Set("Content-Type", ct)
		var err error
		if ct == "application/json" {
			var v capif.ServiceSecurity
			err = decodeJSON(r, &v)
		} else {
			_, err = decodeTokenRequest(r)
		}
		if e := asError(t, err); e.status != http.StatusRequestTimeout || e.clientFault == nil {
			t.Errorf("%s: %+v", ct, e)
		}
	}
}

// Duplicate members are caught as encoding/json would match them to one field: by Unicode
// simple folding (the long s "ſ" matches "s", the Kelvin sign "K" matches "k").
func TestDuplicateMembersByUnicodeFolding(t *testing.T) {
	for _, body := range []string{
		`{"notificationDestination":"https://a.example.com","notificationDeſtination":"https://evil.example.com"}`,
		`{"securityInfo":[],"\u017fecurityInfo":[{"aefId":"x"}]}`,
		`{"notificationDestination":"a","NOTIFICATIONDESTINATION":"b"}`,
		"{\"kind\":1,\"\u212aind\":2}", // the Kelvin sign, written raw
	} {
		var v capif.ServiceSecurity
		if e := asError(t, decodeJSON(bodyRequest("application/json", body), &v)); e.status != 400 || !strings.Contains(e.detail, "more than once") {
			t.Errorf("%s: %+v", body, e)
		}
	}
	var v capif.ServiceSecurity
	if err := decodeJSON(bodyRequest("application/json", `{"notificationDestination":"https://a.example.com","securityInfo":[]}`), &v); err != nil {
		t.Errorf("distinct members refused: %v", err)
	}
}
