package security

import (
	"time"

	"github.com/capifcore/capif-security/shared/capif"
)

// Role is what a registry id may do.
type Role string

// The two roles of the CAPIF_Security_API's callers. Invokers and AEFs share one id space.
const (
	RoleInvoker Role = "invoker"
	RoleAEF     Role = "aef"
)

// Principal is a registry record that a client certificate's CN maps to.
type Principal struct {
	ID   string `json:"id"`
	Role Role   `json:"role"`
	// Invoker only: SHA-256 of the onboarding secret (client_secret); empty when none was issued.
	SecretHash []byte `json:"secretHash,omitempty"`
	// Invoker only: the onboarding data, kept for the operator.
	NotificationDestination string `json:"notificationDestination,omitempty"`
	APIInvokerInformation   string `json:"apiInvokerInformation,omitempty"`
	// AEF only: the AEF's {apiRoot}, where revocations are pushed to its AEF_Security_API; empty:
	// the AEF learns of none.
	AefSecurityRoot string `json:"aefSecurityRoot,omitempty"`
	// Certificates are the client certificates the principal accepts (PEM, as imported), and
	// CertificatePins their keys (capif.CertificateKey): when there are any, every other
	// certificate is refused. Each PEM adds about 0.7 KB to the item every request reads.
	Certificates    []string `json:"certificates,omitempty"`
	CertificatePins []string `json:"certificatePins,omitempty"`
}

// RevokedCertificate is a client certificate the operator revoked (capif-admin revoke-cert):
// refused wherever it is presented. The other fields are for display.
type RevokedCertificate struct {
	Key         string    `json:"key"` // capif.CertificateKey: the same whatever the signature's encoding
	PrincipalID string    `json:"principalId"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	SubjectCN   string    `json:"subjectCn"`
	NotAfter    time.Time `json:"notAfter"`
	RevokedAt   time.Time `json:"revokedAt"`
}

// RevokedCertificateRetention is how long after its NotAfter a revocation is kept: a day
// covers clock skew; past it, the certificate fails verification anyway.
const RevokedCertificateRetention = 24 * time.Hour

// Until is when the revocation may be forgotten.
func (c RevokedCertificate) Until() time.Time { return c.NotAfter.Add(RevokedCertificateRetention) }

// AEF is an AEF's record with the catalogue of the APIs it exposes.
type AEF struct {
	AefID string         `json:"aefId"`
	APIs  []PublishedAPI `json:"apis,omitempty"`
}

// PublishedAPI is one service API as exposed by one AEF: what method selection and scope checks
// need from the published ServiceAPIDescription.
type PublishedAPI struct {
	AefID           string                       `json:"aefId"`
	APIID           string                       `json:"apiId"`
	APIName         string                       `json:"apiName"`
	SecurityMethods []capif.SecurityMethod       `json:"securityMethods,omitempty"` // AEF profile level
	Interfaces      []capif.InterfaceDescription `json:"interfaces,omitempty"`
}

// Target is one (AEF, API) pair that a security entry covers.
type Target struct {
	AefID   string `json:"aefId"`
	APIID   string `json:"apiId"`
	APIName string `json:"apiName"`
}

// Entry is a stored securityInfo entry: what the invoker asked for, what the CCF selected, and
// the targets it resolved to.
type Entry struct {
	AefID               string                      `json:"aefId,omitempty"`
	InterfaceDetails    *capif.InterfaceDescription `json:"interfaceDetails,omitempty"`
	APIID               string                      `json:"apiId,omitempty"`
	PrefSecurityMethods []capif.SecurityMethod      `json:"prefSecurityMethods"`
	SelSecurityMethod   capif.SecurityMethod        `json:"selSecurityMethod"`
	// (Contexts stored before issue 19 may also hold an invoker's authenticationInfo and
	// authorizationInfo: never read, dropped at the entry's next write.)
	// Invoker-supplied, echoed back verbatim: Rel-18's authorizationFlow and Rel-19's grantType,
	// each kept as sent and never derived from the other.
	AuthorizationFlow []capif.AuthorizationFlow `json:"authorizationFlow,omitempty"`
	GrantType         []capif.OAuthGrantType    `json:"grantType,omitempty"`
	// CCF-generated pre-shared key (base64url, 256 bits) of a PSK entry; empty only in a PSK
	// entry stored before every PSK entry got one (it gets one at its next write).
	PSK     string   `json:"psk,omitempty"`
	Targets []Target `json:"targets"`
}

// SecurityContext is the trustedInvokers/{apiInvokerId} resource as stored.
type SecurityContext struct {
	APIInvokerID            string  `json:"apiInvokerId"`
	NotificationDestination string  `json:"notificationDestination"`
	SupportedFeatures       string  `json:"supportedFeatures,omitempty"` // negotiated; "" when not requested
	Entries                 []Entry `json:"entries"`
	// Version is the optimistic-lock counter managed by the Store.
	Version int64 `json:"version"`
}

// RegistryDoc is the registry import format shared by the local runner and the admin command.
type RegistryDoc struct {
	APIInvokers []InvokerRecord               `json:"apiInvokers,omitempty"`
	AEFs        []AEFRecord                   `json:"aefs,omitempty"`
	ServiceAPIs []capif.ServiceAPIDescription `json:"serviceApis,omitempty"`
}

// InvokerRecord is an onboarded API invoker.
type InvokerRecord struct {
	APIInvokerID            string `json:"apiInvokerId"`
	NotificationDestination string `json:"notificationDestination,omitempty"`
	APIInvokerInformation   string `json:"apiInvokerInformation,omitempty"`
	// OnboardingSecret is the client credential issued at onboarding; only its SHA-256 is kept.
	OnboardingSecret string `json:"onboardingSecret,omitempty"`
	// OnboardingSecretSHA256 is that SHA-256 in hex, instead of the secret: what an export
	// holds, so that a document moves an invoker's client authentication without the secret.
	OnboardingSecretSHA256 string `json:"onboardingSecretSha256,omitempty"`
	// Certificates pins the client certificates the invoker may use (PEM each); nil keeps the
	// pins on record, [] removes them.
	Certificates *[]string `json:"certificates,omitempty"`
}

// AEFRecord is a registered API exposing function.
type AEFRecord struct {
	AefID string `json:"aefId"`
	// AefSecurityRoot is the AEF's {apiRoot} for the AEF_Security_API (an https URL with no
	// user information, query or fragment), where revocations are pushed. nil keeps the one on
	// record; "" removes it.
	AefSecurityRoot *string `json:"aefSecurityRoot,omitempty"`
	// Certificates pins the client certificates the AEF may use, as an invoker's.
	Certificates *[]string `json:"certificates,omitempty"`
}
