// Package lambdaapp is what every Lambda function of the service shares: its configuration from
// the environment, the caller's certificate from API Gateway's mutual TLS, the lazily loaded
// truststore, the request deadline and the API Gateway proxy wrapper. A functions/<name>/main.go
// only names the operation's router:
//
//	func main() { lambdaapp.Main(httpapi.ObtainSecurityMethod) }
package lambdaapp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

// Environment variables read by Main (the template sets them; see template.yaml).
const (
	EnvStore             = "CAPIF_STORE"          // dynamodb (default) | embedded
	EnvSigner            = "CAPIF_SIGNER"         // kms (default) | local
	EnvTablePrefix       = "CAPIF_TABLE_PREFIX"   // DynamoDB table name prefix, or
	EnvContextsTable     = "CAPIF_CONTEXTS_TABLE" // the three table names (template.yaml)
	EnvRegistryTable     = "CAPIF_REGISTRY_TABLE"
	EnvOutboxTable       = "CAPIF_OUTBOX_TABLE"
	EnvKMSKeyIDs         = "CAPIF_KMS_KEY_IDS"     // signing keys, active first, comma-separated
	EnvCCFID             = "CAPIF_CCF_ID"          // iss claim of tokens
	EnvAPIRoot           = "CAPIF_API_ROOT"        // public {apiRoot}, e.g. https://capif.example.com
	EnvTokenTTL          = "CAPIF_TOKEN_TTL"       // access token lifetime, a Go duration (600s)
	EnvTruststoreURI     = "CAPIF_TRUSTSTORE_URI"  // s3://bucket/key of the mTLS truststore
	EnvTruststoreFile    = "CAPIF_TRUSTSTORE_FILE" // a local PEM bundle instead (local invokes, tests)
	EnvDeadlineMargin    = "CAPIF_DEADLINE_MARGIN" // time kept back from the Lambda deadline (1s)
	EnvLogLevel          = "CAPIF_LOG_LEVEL"       // debug | info | warn | error
	EnvDataDir           = "CAPIF_DATA"            // embedded store / local key directory (tests only)
	EnvAllowLoopback     = "CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS"
	defaultTokenTTL      = 600 * time.Second
	defaultDeadlineSlack = time.Second
)

// Config is a function's configuration.
type Config struct {
	// App configures the adapters; its ClientCAPEM is filled from the truststore on the first
	// request, its Logger and AWSAPIOptions by New.
	App app.Config
	// Truststore names the CA bundle that API Gateway's mutual TLS trusts: an S3 object or a
	// local file, never both.
	Truststore TruststoreLocation
	// DeadlineMargin is kept back from the Lambda deadline for every request, so an AWS call
	// that runs out of time ends in a 503 answer rather than a Lambda timeout.
	DeadlineMargin time.Duration
	LogLevel       slog.Level
}

// TruststoreLocation is where the truststore PEM bundle is read from.
type TruststoreLocation struct {
	Bucket, Key string // S3 object
	File        string // local file
}

func (l TruststoreLocation) String() string {
	if l.File != "" {
		return l.File
	}
	return "s3://" + l.Bucket + "/" + l.Key
}

// ConfigFromEnv reads a function's configuration. Every problem is reported at once, so a
// misconfigured function fails its init with one clear message.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	c := Config{
		App: app.Config{
			Store:                      orDefault(get(EnvStore), app.StoreDynamoDB),
			Signer:                     orDefault(get(EnvSigner), app.SignerKMS),
			DataDir:                    get(EnvDataDir),
			KMSKeyIDs:                  kms.ParseKeyList(get(EnvKMSKeyIDs)),
			TablePrefix:                get(EnvTablePrefix),
			CCFID:                      get(EnvCCFID),
			APIRoot:                    strings.TrimSuffix(get(EnvAPIRoot), "/"),
			TokenTTL:                   defaultTokenTTL,
			AllowLoopbackNotifications: false,
		},
		DeadlineMargin: defaultDeadlineSlack,
	}
	switch c.App.Store {
	case app.StoreDynamoDB:
		// The adapter reads the names (dynamodb.TablesFromEnv): the template passes all three
		// explicitly; a prefix derives them (local runs).
		explicit := 0
		for _, name := range []string{EnvContextsTable, EnvRegistryTable, EnvOutboxTable} {
			if get(name) != "" {
				explicit++
			}
		}
		if c.App.TablePrefix == "" && explicit < 3 {
			bad(EnvTablePrefix, "required with the %s store unless %s, %s and %s are all set",
				app.StoreDynamoDB, EnvContextsTable, EnvRegistryTable, EnvOutboxTable)
		}
	case app.StoreEmbedded:
		if c.App.DataDir == "" {
			bad(EnvDataDir, "required with the %s store", app.StoreEmbedded)
		}
	default:
		bad(EnvStore, "%q is not %s or %s", c.App.Store, app.StoreDynamoDB, app.StoreEmbedded)
	}
	switch c.App.Signer {
	case app.SignerKMS:
		if len(c.App.KMSKeyIDs) == 0 {
			bad(EnvKMSKeyIDs, "required with the %s signer", app.SignerKMS)
		}
	case app.SignerNone:
	case app.SignerLocal:
		if c.App.DataDir == "" {
			bad(EnvDataDir, "required with the %s signer", app.SignerLocal)
		}
	default:
		bad(EnvSigner, "%q is not %s, %s or %s", c.App.Signer, app.SignerKMS, app.SignerNone, app.SignerLocal)
	}
	if c.App.CCFID == "" {
		bad(EnvCCFID, "required")
	}
	if u, err := url.Parse(c.App.APIRoot); c.App.APIRoot == "" || err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		bad(EnvAPIRoot, "%q is not an https://host[:port] URL", c.App.APIRoot)
	}
	if v := get(EnvTokenTTL); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad(EnvTokenTTL, "%q is not a positive duration", v)
		}
		c.App.TokenTTL = d
	}
	if v := get(EnvDeadlineMargin); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad(EnvDeadlineMargin, "%q is not a duration ≥ 0", v)
		}
		c.DeadlineMargin = d
	}
	if v := get(EnvLogLevel); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			bad(EnvLogLevel, "%q is not debug, info, warn or error", v)
		}
	}
	if v := get(EnvAllowLoopback); v != "" {
		switch strings.ToLower(v) {
		case "true":
			c.App.AllowLoopbackNotifications = true
		case "false":
		default:
			bad(EnvAllowLoopback, "%q is not true or false", v)
		}
	}
	uri, file := get(EnvTruststoreURI), get(EnvTruststoreFile)
	switch {
	case uri != "" && file != "":
		bad(EnvTruststoreURI, "set either it or %s, not both", EnvTruststoreFile)
	case file != "":
		c.Truststore.File = file
	case uri != "":
		b, k, err := ParseS3URI(uri)
		if err != nil {
			bad(EnvTruststoreURI, "%v", err)
		}
		c.Truststore.Bucket, c.Truststore.Key = b, k
	default:
		bad(EnvTruststoreURI, "required (or %s for a local bundle)", EnvTruststoreFile)
	}
	return c, errors.Join(errs...)
}

// ParseS3URI splits s3://bucket/key.
func ParseS3URI(uri string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3://bucket/key URI", uri)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" || key == "" {
		return "", "", fmt.Errorf("%q names no bucket or no key", uri)
	}
	return bucket, key, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
