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
	"github.com/capifcore/capif-security/shared/security"
)

func bodyRequest(contentType, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func asError(t *testing.T, err error) *security.Error {
	t.Helper()
	var e *security.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *security.Error", err, err)
	}
	return e
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		kind        security.Kind // 0: decodes
		pointer     string        // the invalidParams pointer, if any
	}{
		{"valid", "application/json", `{"notificationDestination":"https://x.example.com","securityInfo":[]}`, 0, ""},
		{"charset parameter", "application/json; charset=utf-8", `{}`, 0, ""},
		{"media type case", "Application/JSON", `{}`, 0, ""},
		{"unknown members ignored", "application/json", `{"foo":{"bar":[1,2]},"securityInfo":[{"x":1}]}`, 0, ""},
		{"surrounding whitespace", "application/json", " \n\t{}\r\n ", 0, ""},
		{"no content type", "", `{}`, security.KindUnsupportedType, "Content-Type"},
		{"text/plain", "text/plain", `{}`, security.KindUnsupportedType, "Content-Type"},
		{"problem+json", "application/problem+json", `{}`, security.KindUnsupportedType, "Content-Type"},
		{"form", "application/x-www-form-urlencoded", `a=b`, security.KindUnsupportedType, "Content-Type"},
		{"unparsable content type", "application/json; =", `{}`, security.KindUnsupportedType, "Content-Type"},
		{"exactly 1 MiB", "application/json", `{"x":"` + strings.Repeat("a", MaxBody-8) + `"}`, 0, ""},
		{"over 1 MiB", "application/json", `{"x":"` + strings.Repeat("a", MaxBody) + `"}`, security.KindTooLarge, ""},
		{"empty body", "application/json", ``, security.KindInvalid, ""},
		{"malformed", "application/json", `{"securityInfo":[}`, security.KindInvalid, ""},
		{"truncated", "application/json", `{"securityInfo":[`, security.KindInvalid, ""},
		{"trailing object", "application/json", `{} {}`, security.KindInvalid, ""},
		{"trailing garbage", "application/json", `{}x`, security.KindInvalid, ""},
		{"trailing bracket", "application/json", `{}]`, security.KindInvalid, ""},
		{"trailing brace", "application/json", `{"securityInfo":[]}}`, security.KindInvalid, ""},
		{"trailing comma", "application/json", `{},`, security.KindInvalid, ""},
		{"top-level array", "application/json", `[]`, security.KindInvalid, ""},
		{"top-level string", "application/json", `"x"`, security.KindInvalid, ""},
		{"string for a string array", "application/json", `{"securityInfo":[{},{"prefSecurityMethods":"PSK"}]}`, security.KindInvalid, "/securityInfo/1/prefSecurityMethods"},
		{"number in a string array", "application/json", `{"securityInfo":[{"prefSecurityMethods":["PSK"]},{"prefSecurityMethods":["PKI",7]}]}`, security.KindInvalid, "/securityInfo/1/prefSecurityMethods/1"},
		{"object in a string array", "application/json", `{"securityInfo":[{"prefSecurityMethods":["PKI",{"a":[1]}]}]}`, security.KindInvalid, "/securityInfo/0/prefSecurityMethods/1"},
		{"string for a port", "application/json", `{"securityInfo":[{"aefId":"a"},{"interfaceDetails":{"fqdn":"x.example.com","port":"443"}}]}`, security.KindInvalid, "/securityInfo/1/interfaceDetails/port"},
		{"fraction for a port", "application/json", `{"securityInfo":[{"interfaceDetails":{"port":1.5}}]}`, security.KindInvalid, "/securityInfo/0/interfaceDetails/port"},
		{"array for an object", "application/json", `{"securityInfo":[{"interfaceDetails":[1,2]}]}`, security.KindInvalid, "/securityInfo/0/interfaceDetails"},
		{"object for an array", "application/json", `{"securityInfo":{"0":{}}}`, security.KindInvalid, "/securityInfo"},
		{"string for a boolean", "application/json", `{"requestTestNotification":"true"}`, security.KindInvalid, "/requestTestNotification"},
		{"number for a string", "application/json", `{"notificationDestination":42}`, security.KindInvalid, "/notificationDestination"},
		{"member name in other case", "application/json", `{"SecurityInfo":[{"AefId":1}]}`, security.KindInvalid, "/SecurityInfo/0/AefId"},
		{"spaces everywhere", "application/json", "{ \"securityInfo\" : [ { } ,\n { \"prefSecurityMethods\" : [ \"PKI\" , 7 ] } ] }", security.KindInvalid, "/securityInfo/1/prefSecurityMethods/1"},
		{"spaces around a wrong array", "application/json", `{"securityInfo":[ {"interfaceDetails": [ 1 , 2 ] } ]}`, security.KindInvalid, "/securityInfo/0/interfaceDetails"},
		{"first element wrong", "application/json", `{"securityInfo":[{"prefSecurityMethods":[7,"PKI"]},{"prefSecurityMethods":[8]}]}`, security.KindInvalid, "/securityInfo/0/prefSecurityMethods/0"},
		{"the earliest of two errors", "application/json", `{"securityInfo":[{"aefId":"a"},{"aefId":true},{"aefId":1}]}`, security.KindInvalid, "/securityInfo/1/aefId"},
		{"unknown members around", "application/json", `{"x":[{"prefSecurityMethods":1}],"securityInfo":[{"y":{"aefId":2}},{"aefId":3}]}`, security.KindInvalid, "/securityInfo/1/aefId"},
		{"nested websocket config", "application/json", `{"websockNotifConfig":{"requestWebsocketUri":1}}`, security.KindInvalid, "/websockNotifConfig/requestWebsocketUri"},
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
			if e.Kind != tt.kind {
				t.Errorf("kind %d, want %d (%v)", e.Kind, tt.kind, e)
			}
			if e.OAuthError != "" {
				t.Errorf("a JSON body error carries OAuth error %q", e.OAuthError)
			}
			switch {
			case tt.pointer == "" && len(e.InvalidParams) > 0:
				t.Errorf("invalid params %+v, want none", e.InvalidParams)
			case tt.pointer != "" && (len(e.InvalidParams) != 1 || e.InvalidParams[0].Param != tt.pointer):
				t.Errorf("invalid params %+v, want %s", e.InvalidParams, tt.pointer)
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
	if len(e.InvalidParams) != 1 || e.InvalidParams[0].Param != "/a~1b~0c/1/x" {
		t.Errorf("invalid params %+v", e.InvalidParams)
	}
}

func TestDecodeTokenRequest(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		contentType string
		body        string
		want        capif.AccessTokenReq
		kind        security.Kind
		oauth       string
		mention     string
	}{
		{"minimal", form, "grant_type=client_credentials&client_id=inv1", capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv1"}, 0, "", ""},
		{"everything", form + "; charset=UTF-8", "grant_type=client_credentials&client_id=inv%201&client_secret=s%2Bx&scope=3gpp%23aef1%3Aa%2Cb%3Baef2%3Ac&resOwnerId=ue1&authCode=c0de&extra=ignored",
			capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "inv 1", ClientSecret: "s+x", Scope: "3gpp#aef1:a,b;aef2:c", ResOwnerID: "ue1", AuthCode: "c0de"}, 0, "", ""},
		{"plus is a space", form, "grant_type=client_credentials&client_id=a+b", capif.AccessTokenReq{GrantType: "client_credentials", ClientID: "a b"}, 0, "", ""},
		{"JSON body", "application/json", `{"grant_type":"client_credentials"}`, capif.AccessTokenReq{}, security.KindUnsupportedType, "", ""},
		{"no content type", "", "grant_type=client_credentials&client_id=inv1", capif.AccessTokenReq{}, security.KindUnsupportedType, "", ""},
		{"multipart", "multipart/form-data; boundary=x", "--x--", capif.AccessTokenReq{}, security.KindUnsupportedType, "", ""},
		{"too large", form, "grant_type=client_credentials&client_id=inv1&scope=" + strings.Repeat("a", MaxBody), capif.AccessTokenReq{}, security.KindTooLarge, "", ""},
		{"missing grant_type", form, "client_id=inv1", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "grant_type"},
		{"empty grant_type", form, "grant_type=&client_id=inv1", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "grant_type"},
		{"missing client_id", form, "grant_type=client_credentials", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "client_id"},
		{"empty body", form, "", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "grant_type"},
		{"repeated grant_type", form, "grant_type=client_credentials&grant_type=client_credentials&client_id=inv1", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "grant_type"},
		{"repeated scope", form, "grant_type=client_credentials&client_id=inv1&scope=a&scope=b", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "scope"},
		{"repeated client_secret", form, "grant_type=client_credentials&client_id=inv1&client_secret=a&client_secret=a", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, "client_secret"},
		{"bad escape", form, "grant_type=client_credentials&client_id=inv%zz", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, ""},
		{"semicolon separator", form, "grant_type=client_credentials;client_id=inv1", capif.AccessTokenReq{}, security.KindInvalid, capif.InvalidRequest, ""},
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
			if e.Kind != tt.kind || e.OAuthError != tt.oauth {
				t.Errorf("kind %d oauth %q, want %d %q (%v)", e.Kind, e.OAuthError, tt.kind, tt.oauth, e)
			}
			if !strings.Contains(e.Detail, tt.mention) {
				t.Errorf("detail %q does not mention %q", e.Detail, tt.mention)
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
	if e := asError(t, decodeJSON(r, &v)); e.Kind != security.KindInvalid {
		t.Errorf("kind %d", e.Kind)
	}
	r = httptest.NewRequest(http.MethodPost, "/x", failingReader{})
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, err := decodeTokenRequest(r)
	if e := asError(t, err); e.Kind != security.KindInvalid || e.OAuthError != capif.InvalidRequest {
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
			if e.Kind != security.KindInvalid || len(e.InvalidParams) != 1 || e.InvalidParams[0].Param != "f" {
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
		{`{"a":[{"b":1}`, "a.b", 12, "/a/b"}, // not well-formed
		{`{"a~/":1}`, "a~/", 8, "/a~0~1"},
	}
	for _, tt := range tests {
		te := &json.UnmarshalTypeError{Field: tt.field, Offset: tt.off}
		if got := typeErrorPointer([]byte(tt.body), te); got != tt.want {
			t.Errorf("typeErrorPointer(%s, %q@%d) = %q, want %q", tt.body, tt.field, tt.off, got, tt.want)
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
		if len(e.InvalidParams) != 1 || e.InvalidParams[0].Reason != tt.reason {
			t.Errorf("%s: %+v, want reason %q", tt.body, e.InvalidParams, tt.reason)
		}
	}
}
