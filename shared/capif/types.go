// Package capif holds the wire types of the CAPIF_Security_API (3GPP TS 29.222 Rel-18, and the
// Rel-19 additions that the same endpoints serve) and the few Publish_Service_API and
// common-data types it references. Field names and JSON tags follow the 3GPP OpenAPI documents
// exactly; nothing here knows about HTTP, Lambda or AWS.
package capif

// SecurityMethod is an open enumeration (anyOf enum/string): unknown values must parse.
type SecurityMethod = string

// The security methods of TS 33.122 §6.5.2.
const (
	PSK   SecurityMethod = "PSK"
	PKI   SecurityMethod = "PKI"
	OAUTH SecurityMethod = "OAUTH"
)

// KnownSecurityMethods lists the methods this CCF can select, in the spec's order.
var KnownSecurityMethods = []SecurityMethod{PSK, PKI, OAUTH}

// IsKnownSecurityMethod reports whether m is one of PSK, PKI or OAUTH.
func IsKnownSecurityMethod(m SecurityMethod) bool {
	return m == PSK || m == PKI || m == OAUTH
}

// Cause is the open enumeration of revocation causes.
type Cause = string

// Revocation causes: Rel-18 defines the first two, Rel-19 adds the others.
const (
	OverlimitUsage     Cause = "OVERLIMIT_USAGE"
	UnexpectedReason   Cause = "UNEXPECTED_REASON"
	AuthorizationIssue Cause = "AUTHORIZATION_ISSUE"
	OtherReason        Cause = "OTHER_REASON"
)

// KnownCauses lists the revocation causes of Rel-18 and Rel-19; other values are accepted and
// passed on unchanged (open enumeration).
var KnownCauses = []Cause{OverlimitUsage, UnexpectedReason, AuthorizationIssue, OtherReason}

// AuthorizationFlow (Rel-18) and OAuthGrantType (Rel-19) are open enumerations naming the OAuth
// flows of a securityInfo entry. Rel-19 replaced the first by the second; both are stored and
// echoed as sent, never translated into each other.
type (
	AuthorizationFlow = string
	OAuthGrantType    = string
)

// The values of AuthorizationFlow (Rel-18).
const (
	ClientCredentialsFlow         AuthorizationFlow = "CLIENT_CREDENTIALS_FLOW"
	AuthorizationCodeFlow         AuthorizationFlow = "AUTHORIZATION_CODE_FLOW"
	AuthorizationCodeFlowWithPKCE AuthorizationFlow = "AUTHORIZATION_CODE_FLOW_WITH_PKCE"
)

// The values of OAuthGrantType (Rel-19).
const (
	GrantClientCredentials         OAuthGrantType = "CLIENT_CREDENTIALS"
	GrantAuthorizationCode         OAuthGrantType = "AUTHORIZATION_CODE"
	GrantAuthorizationCodeWithPKCE OAuthGrantType = "AUTHORIZATION_CODE_WITH_PKCE"
)

// ServiceSecurity is the security context resource: the invoker sends preferences, the CCF
// answers with the selected method per entry.
type ServiceSecurity struct {
	SecurityInfo            []SecurityInformation `json:"securityInfo"`
	NotificationDestination string                `json:"notificationDestination"`
	RequestTestNotification *bool                 `json:"requestTestNotification,omitempty"`
	WebsockNotifConfig      *WebsockNotifConfig   `json:"websockNotifConfig,omitempty"`
	SupportedFeatures       string                `json:"supportedFeatures,omitempty"`
}

// SecurityInformation is one entry of ServiceSecurity.securityInfo. Exactly one of
// InterfaceDetails and AefID is present (oneOf).
type SecurityInformation struct {
	InterfaceDetails    *InterfaceDescription `json:"interfaceDetails,omitempty"`
	AefID               string                `json:"aefId,omitempty"`
	APIID               string                `json:"apiId,omitempty"`
	PrefSecurityMethods []SecurityMethod      `json:"prefSecurityMethods"`
	SelSecurityMethod   SecurityMethod        `json:"selSecurityMethod,omitempty"`
	AuthenticationInfo  string                `json:"authenticationInfo,omitempty"`
	AuthorizationInfo   string                `json:"authorizationInfo,omitempty"`
	AuthorizationFlow   []AuthorizationFlow   `json:"authorizationFlow,omitempty"` // Rel-18
	GrantType           []OAuthGrantType      `json:"grantType,omitempty"`         // Rel-19
}

// WebsockNotifConfig (TS 29.122). Parsed so it can be ignored: Notification_websocket is not
// implemented, so it is never echoed.
type WebsockNotifConfig struct {
	WebsocketURI        string `json:"websocketUri,omitempty"`
	RequestWebsocketURI *bool  `json:"requestWebsocketUri,omitempty"`
}

// InterfaceDescription (TS 29.222 Publish_Service_API): exactly one of Ipv4Addr, Ipv6Addr, Fqdn.
type InterfaceDescription struct {
	Ipv4Addr        string           `json:"ipv4Addr,omitempty"`
	Ipv6Addr        string           `json:"ipv6Addr,omitempty"`
	Fqdn            string           `json:"fqdn,omitempty"`
	Port            *int             `json:"port,omitempty"`
	APIPrefix       string           `json:"apiPrefix,omitempty"`
	SecurityMethods []SecurityMethod `json:"securityMethods,omitempty"`
}

// SecurityNotification is both the body of POST …/delete and the revocation callback body.
type SecurityNotification struct {
	APIInvokerID string   `json:"apiInvokerId"`
	AefID        string   `json:"aefId,omitempty"`
	APIIDs       []string `json:"apiIds"`
	Cause        Cause    `json:"cause"`
	// AccessToken (Rel-19) is the revoked token, as the AEF sent it: passed on to the invoker
	// unchanged, never read or logged.
	AccessToken string `json:"accessToken,omitempty"`
}

// AEFSecurityAPIPath is where an AEF offers the AEF_Security_API below its apiRoot, and
// RevokeAuthorizationPath its Revoke_Authorization resource.
const (
	AEFSecurityAPIPath      = "/aef-security/v1"
	RevokeAuthorizationPath = AEFSecurityAPIPath + "/revoke-authorization"
)

// RevokeAuthorizationReq is the body the CCF POSTs to an AEF's revoke-authorization
// (AEF_Security_API): the revocation, as the invoker is told of it.
type RevokeAuthorizationReq struct {
	RevokeInfo        SecurityNotification `json:"revokeInfo"`
	SupportedFeatures string               `json:"supportedFeatures"`
}

// CheckAuthenticationRsp is the AEF's 200 answer to an invoker's CheckAuthenticationReq.
type CheckAuthenticationRsp struct {
	SupportedFeatures string `json:"supportedFeatures"`
}

// RevokeAuthorizationRsp is the AEF's 200 answer to a RevokeAuthorizationReq.
type RevokeAuthorizationRsp struct {
	SupportedFeatures string `json:"supportedFeatures"`
}

// TestNotification (TS 29.122) is sent when Notification_test_event is negotiated and the
// invoker asks for it.
type TestNotification struct {
	Subscription string `json:"subscription"`
}

// AccessTokenReq is the form-urlencoded body of the token endpoint. ResOwnerID is the raw form
// value (Rel-18 sends a string, Rel-19 an object the YAML gives no form encoding for) and is not
// used: the client credentials grant has no resource owner.
type AccessTokenReq struct {
	GrantType    string
	ClientID     string
	ClientSecret string
	Scope        string
	ResOwnerID   string
	AuthCode     string
}

// AccessTokenRsp is the 200 body of the token endpoint.
type AccessTokenRsp struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// AccessTokenErr is the 400/401 body of the token endpoint (RFC 6749 §5.2 codes).
type AccessTokenErr struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
	ErrorURI         string `json:"error_uri,omitempty"`
}

// RFC 6749 §5.2 error codes used by AccessTokenErr.
const (
	InvalidRequest       = "invalid_request"
	InvalidClient        = "invalid_client"
	InvalidGrant         = "invalid_grant"
	UnauthorizedClient   = "unauthorized_client"
	UnsupportedGrantType = "unsupported_grant_type"
	InvalidScope         = "invalid_scope"
)

// ProblemDetails (TS 29.122) is every non-token error body, as application/problem+json.
type ProblemDetails struct {
	Type          string         `json:"type,omitempty"`
	Title         string         `json:"title,omitempty"`
	Status        int            `json:"status,omitempty"`
	Detail        string         `json:"detail,omitempty"`
	Instance      string         `json:"instance,omitempty"`
	Cause         string         `json:"cause,omitempty"`
	InvalidParams []InvalidParam `json:"invalidParams,omitempty"`
}

// InvalidParam names one offending attribute as a JSON pointer.
type InvalidParam struct {
	Param  string `json:"param"`
	Reason string `json:"reason,omitempty"`
}

// ServiceAPIDescription is the subset of the published service API description that security
// method selection and scope checks need. Unknown members are ignored on import.
type ServiceAPIDescription struct {
	APIName     string       `json:"apiName"`
	APIID       string       `json:"apiId,omitempty"`
	AefProfiles []AefProfile `json:"aefProfiles,omitempty"`
}

// AefProfile is the subset of the AEF profile of a published API that this service reads.
type AefProfile struct {
	AefID                 string                 `json:"aefId"`
	SecurityMethods       []SecurityMethod       `json:"securityMethods,omitempty"`
	DomainName            string                 `json:"domainName,omitempty"`
	InterfaceDescriptions []InterfaceDescription `json:"interfaceDescriptions,omitempty"`
}
