// Package settings is the one declaration of the service's configuration: every setting's
// environment variable, flag, default, parser and one-line doc, in Table. The local runner
// (cmd/capif-local), the admin command (cmd/capif-admin) and every Lambda function
// (shared/lambdaapp) read their configuration with Load, and nothing else in the module reads
// the environment.
//
// Contract:
//   - A value comes from the flag if one was given, else from the environment variable (then its
//     deprecated aliases, each use logged as a warning), else from the command's default.
//   - A flag beats every environment variable: -table-prefix on the command line also overrides
//     explicit table names (CAPIF_CONTEXTS_TABLE, …) in the environment.
//   - Load reports every problem at once, each naming the flag or variable it came from, so a
//     misconfigured process fails its start with one clear message.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
)

// Command is a process that reads settings; a Setting names the commands it applies to.
type Command uint8

const (
	Runner   Command = 1 << iota // cmd/capif-local (serve)
	Cert                         // cmd/capif-local cert
	Admin                        // cmd/capif-admin
	Function                     // every Lambda function of the API (environment only: no command line)
	Worker                       // the notification delivery function (environment only)
	Rotator                      // the signing-key rotation function (environment only)
)

// Delivering is every command that delivers owed notifications.
const Delivering = Runner | Admin | Function | Worker

// Back ends (the values of -store and -signer).
const (
	StoreEmbedded = "embedded"
	StoreDynamoDB = "dynamodb"
	SignerLocal   = "local"
	SignerKMS     = "kms"
	// SignerKMSEnvelope signs in memory with keys of the key set, wrapped under a KMS key.
	SignerKMSEnvelope = "kms-envelope"
	SignerNone        = "none" // admin tools and functions that never issue a token
	// StoreNone is the store of a command that was named none (capif-admin has no default: its
	// commands that touch a store refuse it) or reads none (capif-local cert).
	StoreNone = "none"
)

// Log formats (the runner's -log-format).
const (
	LogText = "text"
	LogJSON = "json"
)

// Defaults that are the service's own rather than another package's.
const (
	DefaultTablePrefix      = "capif-"         // DynamoDB table names of local runs
	DefaultMetricsNamespace = "CAPIF/Security" // CloudWatch namespace of the EMF metrics
)

// Config is the value of every setting, parsed, checked and resolved: no layer below
// re-defaults any of them.
type Config struct {
	Addr     string // HTTPS listen address (runner)
	DataDir  string // embedded store, dev CA, local signing key
	Registry string // registry JSON imported at start (runner)
	TLSCert  string // server certificate PEM file (runner)
	TLSKey   string
	ClientCA string // PEM bundle file trusted for client certificates (runner)
	// APIRoot is the public {apiRoot} without a trailing slash. On the runner without -api-root
	// it is "" here: cmd/capif-local sets it (https://ADDR) once the listener is bound.
	APIRoot string
	// Issuer is the iss claim of tokens (an https URL): the setting, else APIRoot ("" only
	// where APIRoot is).
	Issuer                     string
	TokenTTL                   time.Duration
	AllowLoopbackNotifications bool
	Store                      string // StoreEmbedded, StoreDynamoDB or StoreNone
	// Stack is the SAM stack: capif-admin's tables, and the capif:stack of wrapped signing keys
	// ("local" on the embedded store; on DynamoDB tables named by a prefix, the prefix's stack).
	Stack          string
	Signer         string   // SignerLocal, SignerKMS, SignerKMSEnvelope or SignerNone
	TokenAlg       string   // capif.ES256 or capif.RS256: the algorithm of the signing key
	KMSKeyIDs      []string // signing keys, active first
	KMSWrappingKey string   // the KMS key that wraps the key set's keys (kms-envelope)
	KeySetRefresh  time.Duration
	// KeyRotationAge is how old the signing key gets before the rotation function publishes
	// its successor.
	KeyRotationAge time.Duration
	// Tables are the DynamoDB table names, from the prefix and the explicit names; set whenever
	// Store is StoreDynamoDB.
	Tables         Tables
	CreateTables   bool
	LogLevel       slog.Level
	LogFormat      string // LogText or LogJSON (the runner); the functions write JSON
	TruststoreURI  string // s3://bucket/key (functions)
	TruststoreFile string // a local PEM bundle instead (local invokes, tests)
	// TruststoreVersion is the S3 VersionId of the truststore object that API Gateway's mutual
	// TLS uses; "" reads the latest version.
	TruststoreVersion string
	DeadlineMargin    time.Duration
	// MetricsNamespace is the CloudWatch namespace of the metrics in the JSON log lines (EMF).
	MetricsNamespace string
	// Delivery of owed notifications (security.Config, notify.Options), and how often the
	// runner's worker looks for due ones.
	RetryBase, RetryCap, RetryWindow, ClaimLease time.Duration
	NotifyTimeout                                time.Duration
	DeliveryInterval                             time.Duration
	// SecurityMethodPriority is the operator's ranking of security methods (security.Config's
	// MethodPriority); empty: the invoker's order.
	SecurityMethodPriority []string
	// CCFName is the Subject CN of the CCF's client certificate towards AEFs, a name no
	// registry principal may take (security.Config's CCFName).
	CCFName string
	// The CCF's client certificate towards AEFs: CCFCertFile (PEM, the chain) or, on Lambda,
	// CCFCertURI (s3://bucket/key, at CCFCertVersion when set); its key in CCFKeyFile or, on
	// Lambda and for capif-admin, the KMS key CCFKMSKey. Without any, the runner mints one from
	// its dev CA, capif-admin leaves pushes to the worker, and a function pushes nothing.
	CCFCertFile, CCFKeyFile, CCFKMSKey string
	CCFCertURI, CCFCertVersion         string
	// AEFCA is the PEM bundle (a file, or s3://bucket/key on Lambda, at AEFCAVersion when set)
	// that verifies AEFs' server certificates; "": the dev CA on the runner, the system roots
	// elsewhere.
	AEFCA, AEFCAVersion string
	// Warnings are deprecation notices to log once the logger exists (LogWarnings).
	Warnings []string
}

// Tables names the three DynamoDB tables (shared/store/dynamodb's Tables, field for field).
type Tables struct {
	Contexts, Registry, Outbox string
}

// tablesWithPrefix is prefix+"contexts", prefix+"registry", prefix+"outbox".
func tablesWithPrefix(prefix string) Tables {
	return Tables{Contexts: prefix + "contexts", Registry: prefix + "registry", Outbox: prefix + "outbox"}
}

// loading is a Config while Load reads it: with the raw values that the rules spanning
// settings (check) resolve and that the Config does not keep.
type loading struct {
	Config
	tablePrefix           string
	prefixFromFlag        bool
	prefixSet             bool
	stackFromFlag         bool
	contexts, reg, outbox string
	tlsPairSet            [2]bool
	explicitAPIRoot       bool
	loopbackSet           bool
}

// Setting declares one setting.
type Setting struct {
	Env  string // environment variable
	Flag string // command-line flag, without "-"; "" for environment-only settings
	// Default is the value when neither flag nor variable is set; Defaults overrides it for
	// the commands listed there.
	Default  string
	Defaults map[Command]string
	// DefaultDoc says what an empty default means (README's flag table shows it).
	DefaultDoc string
	Doc        string  // one line
	For        Command // the commands that read it
	Deprecated []string
	Bool       bool // a boolean flag (-name alone means true)
	parse      func(c *loading, v string) error
}

// DefaultFor is the setting's default for cmd.
func (s Setting) DefaultFor(cmd Command) string {
	if v, ok := s.Defaults[cmd]; ok {
		return v
	}
	return s.Default
}

// Removed names variables that are no longer read, with what replaced them: setting one logs a
// warning instead of being silently ignored.
var Removed = map[string]string{
	"CAPIF_CCF_ID": "CAPIF_CCF_ID is no longer read: the iss claim of tokens is CAPIF_ISSUER (default: {apiRoot})",
}

// Table is every setting of the service.
var Table = []Setting{
	{Env: "CAPIF_ADDR", Flag: "addr", Default: "127.0.0.1:8443", For: Runner,
		Doc: "HTTPS listen address (client certificates requested, not required)", parse: str(func(c *loading) *string { return &c.Addr })},
	{Env: "CAPIF_DATA", Flag: "data", Default: ".capif-local", Defaults: map[Command]string{Rotator: "", Function: "", Admin: "", Worker: ""}, For: Runner | Cert | Admin | Function | Worker | Rotator,
		Doc: "data directory: embedded store, dev CA, server certificate, signing keys' wrapping key", parse: str(func(c *loading) *string { return &c.DataDir })},
	{Env: "CAPIF_REGISTRY", Flag: "registry", For: Runner,
		Doc: "registry JSON imported (upserted) at start", parse: str(func(c *loading) *string { return &c.Registry })},
	{Env: "CAPIF_TLS_CERT", Flag: "tls-cert", DefaultDoc: "dev CA", For: Runner,
		Doc: "server certificate PEM (with -tls-key)", parse: func(c *loading, v string) error { c.TLSCert, c.tlsPairSet[0] = v, v != ""; return nil }},
	{Env: "CAPIF_TLS_KEY", Flag: "tls-key", DefaultDoc: "dev CA", For: Runner,
		Doc: "server key PEM (with -tls-cert)", parse: func(c *loading, v string) error { c.TLSKey, c.tlsPairSet[1] = v, v != ""; return nil }},
	{Env: "CAPIF_CLIENT_CA", Flag: "client-ca", DefaultDoc: "dev CA", For: Runner,
		Doc: "PEM bundle trusted for client certificates", parse: str(func(c *loading) *string { return &c.ClientCA })},
	{Env: "CAPIF_API_ROOT", Flag: "api-root", DefaultDoc: "https://ADDR", For: Runner | Function,
		Doc: "public {apiRoot}: base of Location headers", parse: parseAPIRoot},
	{Env: "CAPIF_ISSUER", Flag: "issuer", DefaultDoc: "{apiRoot}", For: Runner | Function,
		Doc: "iss claim of tokens: an https URL without query or fragment", parse: parseIssuer},
	{Env: "CAPIF_TOKEN_TTL", Flag: "token-ttl", Default: durationText(security.DefaultTokenTTL), For: Runner | Admin | Function | Rotator,
		Doc: "access token lifetime (expires_in), a Go duration", parse: duration(func(c *loading) *time.Duration { return &c.TokenTTL }, false)},
	// Loopback destinations are a development convenience: allowed on the embedded store, refused
	// on DynamoDB (a deployment), unless set either way (check resolves it).
	{Env: "CAPIF_ALLOW_LOOPBACK_NOTIFICATIONS", Flag: "allow-loopback-notifications", DefaultDoc: "true on the embedded store, false on dynamodb", For: Runner | Admin | Function | Worker, Bool: true,
		Doc: "let notifications reach 127.0.0.1/::1 (local use)", parse: func(c *loading, v string) error {
			if v == "" {
				return nil
			}
			c.loopbackSet = true
			return boolean(func(c *loading) *bool { return &c.AllowLoopbackNotifications })(c, v)
		}},
	// capif-admin has no default back end: it touches only a store it is told to (Admin).
	{Env: "CAPIF_SECURITY_METHOD_PRIORITY", Flag: "security-method-priority", DefaultDoc: "the invoker's order", For: Runner | Function,
		Doc: "security methods by the operator's priority, e.g. OAUTH,PKI,PSK: an entry gets the first one the invoker prefers and the AEF supports", parse: parseMethodPriority},
	{Env: "CAPIF_CCF_NAME", Flag: "ccf-name", Default: security.DefaultCCFName, For: Runner | Cert | Admin | Function | Worker,
		Doc: "Subject CN of the CCF's client certificate towards AEFs; no invoker or AEF may take it", parse: func(c *loading, v string) error {
			if len(v) > security.MaxIDLength || strings.ContainsAny(v, capif.ScopeSeparators) || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' }) {
				return fmt.Errorf("%q is not a registry id (1 to %d bytes, none of %q)", v, security.MaxIDLength, capif.ScopeSeparators)
			}
			c.CCFName = v
			return nil
		}},
	{Env: "CAPIF_CCF_CERT_FILE", Flag: "ccf-cert", DefaultDoc: "DATA/ccf.pem, minted from the dev CA", For: Runner | Admin | Function | Worker,
		Doc: "the CCF's client certificate PEM presented to AEFs (with -ccf-key)", parse: str(func(c *loading) *string { return &c.CCFCertFile })},
	{Env: "CAPIF_CCF_KEY_FILE", Flag: "ccf-key", DefaultDoc: "DATA/ccf-key.pem", For: Runner | Admin,
		Doc: "the key of -ccf-cert", parse: str(func(c *loading) *string { return &c.CCFKeyFile })},
	{Env: "CAPIF_CCF_KMS_KEY", Flag: "ccf-kms-key", For: Admin | Function | Worker,
		Doc: "the KMS key (id, ARN or alias) of the CCF's certificate, instead of -ccf-key", parse: str(func(c *loading) *string { return &c.CCFKMSKey })},
	{Env: "CAPIF_CCF_CERT_URI", For: Function | Worker,
		Doc: "s3://bucket/key of the CCF's certificate (PEM chain); empty: no pushes to AEFs", parse: s3URI(func(c *loading) *string { return &c.CCFCertURI })},
	{Env: "CAPIF_CCF_CERT_VERSION", For: Function | Worker,
		Doc: "S3 VersionId of the CCF's certificate object; empty: the latest", parse: s3Version(func(c *loading) *string { return &c.CCFCertVersion })},
	{Env: "CAPIF_AEF_CA", Flag: "aef-ca", DefaultDoc: "dev CA on the runner, system roots elsewhere", For: Runner | Admin | Function | Worker,
		Doc: "PEM bundle that verifies AEFs' server certificates (s3://bucket/key on Lambda)", parse: func(c *loading, v string) error {
			if strings.HasPrefix(v, "s3://") {
				return s3URI(func(c *loading) *string { return &c.AEFCA })(c, v)
			}
			c.AEFCA = v
			return nil
		}},
	{Env: "CAPIF_AEF_CA_VERSION", For: Function | Worker,
		Doc: "S3 VersionId of the CAPIF_AEF_CA object; empty: the latest", parse: s3Version(func(c *loading) *string { return &c.AEFCAVersion })},
	{Env: "CAPIF_STORE", Flag: "store", Default: StoreDynamoDB, Defaults: map[Command]string{Runner: StoreEmbedded, Admin: ""}, For: Runner | Admin | Function | Worker | Rotator,
		Doc: "back end: embedded or dynamodb", parse: func(c *loading, v string) error {
			if v == "" {
				return nil // only capif-admin has no default; check refuses it elsewhere
			}
			return choice(func(c *loading) *string { return &c.Store }, StoreEmbedded, StoreDynamoDB)(c, v)
		}},
	{Env: "CAPIF_STACK", Flag: "stack", For: Admin | Function | Rotator,
		Doc: "the SAM stack: capif-admin's DynamoDB tables STACK-contexts, STACK-registry, STACK-outbox, as template.yaml names them; the capif:stack of wrapped signing keys", parse: func(c *loading, v string) error {
			if v != "" && !stackName.MatchString(v) {
				return fmt.Errorf("%q is not a CloudFormation stack name (a letter, then letters, digits and hyphens, at most 128)", v)
			}
			c.Stack = v
			return nil
		}},
	{Env: "CAPIF_SIGNER", Flag: "signer", Default: SignerKMS, Defaults: map[Command]string{Runner: SignerLocal}, For: Runner | Function,
		Doc: "token signer: local, kms, kms-envelope or none", parse: choice(func(c *loading) *string { return &c.Signer }, SignerLocal, SignerKMS, SignerKMSEnvelope, SignerNone)},
	{Env: "CAPIF_TOKEN_ALG", Flag: "token-alg", Default: capif.ES256, For: Runner | Admin | Function | Rotator,
		Doc: "the signing key's algorithm: ES256, or RS256 (RSA 2048); switching keeps the other key in the JWKS", parse: choice(func(c *loading) *string { return &c.TokenAlg }, capif.Algs...)},
	{Env: "CAPIF_KMS_KEY_IDS", Flag: "kms-key-ids", Deprecated: []string{"CAPIF_KMS_KEY_ID"}, For: Runner | Admin | Function | Rotator,
		Doc: "KMS keys (id, ARN or alias), active first, comma-separated", parse: func(c *loading, v string) error { c.KMSKeyIDs = ParseList(v); return nil }},
	{Env: "CAPIF_KMS_WRAPPING_KEY", Flag: "kms-wrapping-key", For: Runner | Admin | Function | Rotator,
		Doc: "the KMS symmetric key (id, ARN or alias) that wraps the key set's signing keys (kms-envelope)", parse: str(func(c *loading) *string { return &c.KMSWrappingKey })},
	{Env: "CAPIF_KEYSET_REFRESH", Flag: "keyset-refresh", Default: durationText(time.Minute), For: Runner | Admin | Function | Rotator,
		Doc: "how long a process uses the key set it read before reading it again (local, kms-envelope)", parse: duration(func(c *loading) *time.Duration { return &c.KeySetRefresh }, false)},
	{Env: "CAPIF_TABLE_PREFIX", Flag: "table-prefix", Default: DefaultTablePrefix, Defaults: map[Command]string{Rotator: "", Function: "", Admin: "", Worker: ""}, For: Runner | Admin | Function | Worker | Rotator,
		Doc: "DynamoDB table names: PREFIXcontexts, PREFIXregistry, PREFIXoutbox", parse: str(func(c *loading) *string { return &c.tablePrefix })},
	{Env: "CAPIF_CONTEXTS_TABLE", For: Runner | Admin | Function | Worker | Rotator,
		Doc: "explicit name of the contexts table (beats the prefix, not the -table-prefix flag)", parse: str(func(c *loading) *string { return &c.contexts })},
	{Env: "CAPIF_REGISTRY_TABLE", For: Runner | Admin | Function | Worker | Rotator,
		Doc: "explicit name of the registry table", parse: str(func(c *loading) *string { return &c.reg })},
	{Env: "CAPIF_OUTBOX_TABLE", For: Runner | Admin | Function | Worker | Rotator,
		Doc: "explicit name of the outbox table", parse: str(func(c *loading) *string { return &c.outbox })},
	{Env: "CAPIF_CREATE_TABLES", Flag: "create-tables", Default: "false", For: Runner | Admin, Bool: true,
		Doc: "create missing DynamoDB tables at start", parse: boolean(func(c *loading) *bool { return &c.CreateTables })},
	{Env: "CAPIF_LOG_LEVEL", Flag: "log-level", Default: "info", For: Runner | Admin | Function | Worker | Rotator,
		Doc: "debug, info, warn or error (one line per request)", parse: func(c *loading, v string) error {
			if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("%q is not debug, info, warn or error", v)
			}
			return nil
		}},
	// The functions always write JSON lines, which CloudWatch Logs parses (and extracts the EMF
	// metrics of); a person reading the runner's terminal gets text.
	{Env: "CAPIF_LOG_FORMAT", Flag: "log-format", Default: LogText, For: Runner,
		Doc: "text, or json: one JSON object per line, with the CloudWatch metrics (EMF) as on Lambda", parse: choice(func(c *loading) *string { return &c.LogFormat }, LogText, LogJSON)},
	{Env: "CAPIF_TRUSTSTORE_URI", For: Function,
		Doc: "s3://bucket/key of the mutual-TLS truststore", parse: s3URI(func(c *loading) *string { return &c.TruststoreURI })},
	{Env: "CAPIF_TRUSTSTORE_VERSION", For: Function,
		Doc: "S3 VersionId of the truststore object (the one API Gateway uses); empty: the latest", parse: s3Version(func(c *loading) *string { return &c.TruststoreVersion })},
	{Env: "CAPIF_TRUSTSTORE_FILE", For: Function,
		Doc: "a local truststore PEM instead (local invokes, tests)", parse: str(func(c *loading) *string { return &c.TruststoreFile })},
	{Env: "CAPIF_RETRY_BASE", Flag: "retry-base", Default: durationText(security.DefaultRetryBase), For: Delivering,
		Doc: "first retry delay of an undelivered notification (doubling, full jitter)", parse: duration(func(c *loading) *time.Duration { return &c.RetryBase }, false)},
	{Env: "CAPIF_RETRY_CAP", Flag: "retry-cap", Default: durationText(security.DefaultRetryCap), For: Delivering,
		Doc: "longest retry delay of an undelivered notification", parse: duration(func(c *loading) *time.Duration { return &c.RetryCap }, false)},
	{Env: "CAPIF_RETRY_WINDOW", Flag: "retry-window", Default: durationText(security.DefaultRetryWindow), For: Delivering,
		Doc: "how long a notification is retried before it is dead-lettered", parse: duration(func(c *loading) *time.Duration { return &c.RetryWindow }, false)},
	{Env: "CAPIF_CLAIM_LEASE", Flag: "claim-lease", Default: durationText(security.DefaultClaimLease), For: Delivering,
		Doc: "how long one delivery attempt holds a notification (more than an attempt takes)", parse: duration(func(c *loading) *time.Duration { return &c.ClaimLease }, false)},
	{Env: "CAPIF_NOTIFY_TIMEOUT", Flag: "notify-timeout", Default: durationText(notify.DefaultTimeout), For: Delivering,
		Doc: "how long one notification delivery may take, connection to answer", parse: duration(func(c *loading) *time.Duration { return &c.NotifyTimeout }, false)},
	{Env: "CAPIF_DELIVERY_INTERVAL", Flag: "delivery-interval", Default: "15s", For: Runner,
		Doc: "how often the runner delivers due notifications", parse: duration(func(c *loading) *time.Duration { return &c.DeliveryInterval }, false)},
	{Env: "CAPIF_KEY_ROTATION_DAYS", Default: "30", For: Rotator,
		Doc: "days a signing key signs before the rotation function publishes its successor", parse: func(c *loading, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 3650 {
				return fmt.Errorf("%q is not a number of days from 1 to 3650", v)
			}
			c.KeyRotationAge = time.Duration(n) * 24 * time.Hour
			return nil
		}},
	{Env: "CAPIF_DEADLINE_MARGIN", Default: "1s", For: Function | Worker | Rotator,
		Doc: "time kept back from the Lambda deadline to answer 503 in", parse: duration(func(c *loading) *time.Duration { return &c.DeadlineMargin }, true)},
	{Env: "CAPIF_METRICS_NAMESPACE", Default: DefaultMetricsNamespace, For: Runner | Function | Worker | Rotator,
		Doc: "CloudWatch namespace of the metrics in the access log (Embedded Metric Format)", parse: parseNamespace},
}

var stackName = regexp.MustCompile(`^[A-Za-z][-A-Za-z0-9]{0,127}$`)

// Getenv is the process environment: what the commands' main functions pass to Load.
func Getenv(name string) string { return os.Getenv(name) }

// Options shape the command line of Load.
type Options struct {
	Name   string    // the command's name in usage and errors
	Output io.Writer // usage and flag errors
	// Flags adds the command's own flags that are not settings (capif-local cert -id).
	Flags func(fs *flag.FlagSet)
	// Usage replaces the flag set's usage text (it is followed by the flag list).
	Usage string
}

// Load reads cmd's settings: the flags in args over getenv over the defaults. It returns the
// operands after the flags.
func Load(cmd Command, args []string, getenv func(string) string, opts Options) (Config, []string, error) {
	var c loading
	fs := flag.NewFlagSet(opts.Name, flag.ContinueOnError)
	if opts.Output != nil {
		fs.SetOutput(opts.Output)
	}
	if opts.Usage != "" {
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), opts.Usage)
			fs.PrintDefaults()
		}
	}
	type source struct {
		raw, label string
		flag       bool
	}
	src := make([]source, len(Table))
	for i, s := range Table {
		if s.For&cmd == 0 {
			continue
		}
		src[i] = source{raw: s.DefaultFor(cmd), label: s.Env}
		for _, name := range append([]string{s.Env}, s.Deprecated...) {
			if v := strings.TrimSpace(getenv(name)); v != "" {
				src[i] = source{raw: v, label: name}
				if name != s.Env {
					c.Warnings = append(c.Warnings, fmt.Sprintf("%s is deprecated: use %s", name, s.Env))
				}
				break
			}
		}
		if s.Flag != "" && cmd&(Function|Worker|Rotator) == 0 {
			fs.Var(&flagValue{set: func(v string) { src[i] = source{raw: v, label: "-" + s.Flag, flag: true} }, text: src[i].raw, isBool: s.Bool},
				s.Flag, s.Doc+" ["+s.Env+"]")
		}
	}
	for name, why := range Removed {
		if getenv(name) != "" {
			c.Warnings = append(c.Warnings, why)
		}
	}
	if opts.Flags != nil {
		opts.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return c.Config, nil, err
	}
	var errs []error
	for i, s := range Table {
		if s.For&cmd == 0 {
			continue
		}
		if err := s.parse(&c, src[i].raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src[i].label, err))
		}
		switch s.Env {
		case "CAPIF_TABLE_PREFIX":
			c.prefixFromFlag = src[i].flag
			c.prefixSet = src[i].raw != ""
		case "CAPIF_STACK":
			c.stackFromFlag = src[i].flag
		}
	}
	errs = append(errs, c.check(cmd)...)
	return c.Config, fs.Args(), errors.Join(errs...)
}

// LogWarnings logs the deprecation notices of Load, one line each.
func (c Config) LogWarnings(l *slog.Logger) {
	for _, w := range c.Warnings {
		l.Warn("configuration", slog.String("warning", w))
	}
}

// check applies the rules that span settings and resolves what they decide.
func (c *loading) check(cmd Command) []error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	if cmd&Runner != 0 {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			bad("CAPIF_ADDR", "%q is not host:port", c.Addr)
		}
		if c.tlsPairSet[0] != c.tlsPairSet[1] {
			bad("CAPIF_TLS_CERT", "-tls-cert and -tls-key (CAPIF_TLS_KEY) go together")
		}
	}
	c.checkCCF(cmd, bad)
	if cmd&(Runner|Function) != 0 && c.explicitAPIRoot {
		if u, _ := url.Parse(c.APIRoot); cmd == Function && u.Path != "" {
			bad("CAPIF_API_ROOT", "%q is not an https://host[:port] URL", c.APIRoot)
		}
	}
	if cmd == Function && !c.explicitAPIRoot {
		bad("CAPIF_API_ROOT", "required (https://host[:port])")
	}
	if c.Stack != "" && cmd == Admin {
		switch {
		case c.Store == StoreEmbedded:
			bad("CAPIF_STACK", "names DynamoDB tables: not with -store %s", StoreEmbedded)
		case c.prefixSet:
			bad("CAPIF_STACK", "set either it or -table-prefix (CAPIF_TABLE_PREFIX), not both")
		default:
			// The template names its tables !Sub "${AWS::StackName}-contexts" and so on.
			c.Store, c.tablePrefix, c.prefixFromFlag = StoreDynamoDB, c.Stack+"-", c.stackFromFlag
		}
	}
	if c.Store == "" && cmd == Admin && (c.prefixSet || c.contexts != "" && c.reg != "" && c.outbox != "") {
		c.Store = StoreDynamoDB // tables named explicitly name DynamoDB
	}
	if c.Store == "" && cmd&(Runner|Function) != 0 {
		bad("CAPIF_STORE", "required (%s or %s)", StoreEmbedded, StoreDynamoDB)
	}
	if c.Store == StoreDynamoDB {
		c.Tables = tablesWithPrefix(c.tablePrefix)
		if !c.prefixFromFlag {
			explicit := [...]struct{ name, dst *string }{{&c.contexts, &c.Tables.Contexts}, {&c.reg, &c.Tables.Registry}, {&c.outbox, &c.Tables.Outbox}}
			for _, e := range explicit {
				if *e.name != "" {
					*e.dst = *e.name
				}
			}
		}
		if c.tablePrefix == "" && (c.prefixFromFlag || c.contexts == "" || c.reg == "" || c.outbox == "") {
			hint := ""
			if cmd == Admin {
				hint = " (or -stack NAME for the tables of a deployed stack)"
			}
			bad("CAPIF_TABLE_PREFIX", "required with the %s store unless CAPIF_CONTEXTS_TABLE, CAPIF_REGISTRY_TABLE and CAPIF_OUTBOX_TABLE are all set%s", StoreDynamoDB, hint)
		}
	}
	if c.Store == "" {
		c.Store = StoreNone // capif-admin with no back end named; capif-local cert
	}
	if !c.loopbackSet {
		c.AllowLoopbackNotifications = c.Store == StoreEmbedded
	}
	if cmd&(Runner|Function) == 0 {
		c.Signer = SignerNone // only the runner and the token function issue tokens
	}
	if c.Issuer == "" {
		c.Issuer = c.APIRoot // "" on the runner without -api-root: cmd/capif-local sets both
	}
	if c.Store == StoreEmbedded && c.DataDir == "" {
		bad("CAPIF_DATA", "required with the %s store", StoreEmbedded)
	}
	switch c.Signer {
	case SignerKMS:
		if len(c.KMSKeyIDs) == 0 {
			bad("CAPIF_KMS_KEY_IDS", "required with the %s signer", SignerKMS)
		}
	case SignerLocal:
		if c.DataDir == "" {
			bad("CAPIF_DATA", "required with the %s signer", SignerLocal)
		}
	case SignerKMSEnvelope:
		if c.KMSWrappingKey == "" {
			bad("CAPIF_KMS_WRAPPING_KEY", "required with the %s signer", SignerKMSEnvelope)
		}
		if cmd == Function && c.Stack == "" {
			bad("CAPIF_STACK", "required with the %s signer: wrapped keys are bound to it", SignerKMSEnvelope)
		}
	}
	if cmd == Rotator {
		if c.KMSWrappingKey == "" {
			bad("CAPIF_KMS_WRAPPING_KEY", "required: the rotation function makes wrapped keys")
		}
		if c.Stack == "" {
			bad("CAPIF_STACK", "required: wrapped keys are bound to it")
		}
	}
	// The capif:stack wrapped keys are bound to, where no template sets it: the embedded store's
	// is "local"; DynamoDB tables PREFIX-… are the stack PREFIX's, as -stack names them, so the
	// runner and capif-admin agree on the keys of the tables they share.
	switch {
	case c.Store == StoreEmbedded:
		c.Stack = "local"
	case cmd&(Runner|Admin) != 0 && c.Stack == "" && c.Store == StoreDynamoDB && c.Tables == tablesWithPrefix(c.tablePrefix):
		c.Stack = strings.TrimSuffix(c.tablePrefix, "-") // tables named one by one name no stack
	}
	if cmd == Runner && c.Stack == "" && (c.Signer == SignerLocal || c.Signer == SignerKMSEnvelope) {
		bad("CAPIF_TABLE_PREFIX", "required with the %s signer on DynamoDB: its wrapped keys are bound to the stack the prefix names (NAME- for NAME)", c.Signer)
	}
	if cmd == Function {
		switch {
		case c.TruststoreURI != "" && c.TruststoreFile != "":
			bad("CAPIF_TRUSTSTORE_URI", "set either it or CAPIF_TRUSTSTORE_FILE, not both")
		case c.TruststoreURI == "" && c.TruststoreFile == "":
			bad("CAPIF_TRUSTSTORE_URI", "required (or CAPIF_TRUSTSTORE_FILE for a local bundle)")
		case c.TruststoreVersion != "" && c.TruststoreURI == "":
			bad("CAPIF_TRUSTSTORE_VERSION", "is a version of the CAPIF_TRUSTSTORE_URI object: set that too")
		}
	}
	return errs
}

// checkCCF applies the rules of the CCF's certificate settings: one certificate, one key.
func (c *loading) checkCCF(cmd Command, bad func(name, format string, args ...any)) {
	certs, keys := 0, 0
	for _, v := range []string{c.CCFCertFile, c.CCFCertURI} {
		if v != "" {
			certs++
		}
	}
	for _, v := range []string{c.CCFKeyFile, c.CCFKMSKey} {
		if v != "" {
			keys++
		}
	}
	switch {
	case certs > 1:
		bad("CAPIF_CCF_CERT_URI", "set either it or CAPIF_CCF_CERT_FILE, not both")
	case keys > 1:
		bad("CAPIF_CCF_KMS_KEY", "set either it or -ccf-key (CAPIF_CCF_KEY_FILE), not both")
	case certs != keys && !(cmd == Admin && certs == 0):
		// capif-admin takes a key alone: ccf-csr makes the request the certificate comes from.
		bad("CAPIF_CCF_CERT_FILE", "the CCF's certificate (-ccf-cert, or CAPIF_CCF_CERT_URI on Lambda) and its key (-ccf-key, or the KMS key -ccf-kms-key) go together")
	case c.CCFCertVersion != "" && c.CCFCertURI == "":
		bad("CAPIF_CCF_CERT_VERSION", "is a version of the CAPIF_CCF_CERT_URI object: set that too")
	case c.AEFCAVersion != "" && !strings.HasPrefix(c.AEFCA, "s3://"):
		bad("CAPIF_AEF_CA_VERSION", "is a version of an s3:// CAPIF_AEF_CA: set that too")
	case cmd&(Runner|Admin) != 0 && strings.HasPrefix(c.AEFCA, "s3://"):
		bad("CAPIF_AEF_CA", "an s3:// URI is read on Lambda only: give a file here")
	}
}

// s3URI accepts "" or an s3://bucket/key URI.
func s3URI(field func(*loading) *string) func(*loading, string) error {
	return func(c *loading, v string) error {
		if v != "" {
			if _, _, err := ParseS3URI(v); err != nil {
				return err
			}
		}
		*field(c) = v
		return nil
	}
}

// s3Version accepts "" or an S3 VersionId (printable ASCII, at most 1024 bytes).
func s3Version(field func(*loading) *string) func(*loading, string) error {
	return func(c *loading, v string) error {
		if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }) || len(v) > 1024 {
			return fmt.Errorf("%q is not an S3 version id", v)
		}
		*field(c) = v
		return nil
	}
}

// durationText is d as a Go duration without zero trailing units: 10m, not 10m0s.
func durationText(d time.Duration) string {
	t := d.String()
	for _, zero := range []string{"0s", "0m"} {
		if len(t) > len(zero) && strings.HasSuffix(t, zero) && !strings.HasSuffix(t, "."+zero) && t[len(t)-len(zero)-1] >= 'a' {
			t = strings.TrimSuffix(t, zero)
		}
	}
	return t
}

// ParseList splits a comma-separated list, dropping blanks.
func ParseList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
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

// httpsURL accepts an absolute https URL with a host and neither query nor fragment.
func httpsURL(v string) error {
	u, err := url.Parse(v)
	if err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.RawQuery == "" && !u.ForceQuery &&
		u.Fragment == "" && !strings.Contains(v, "#") {
		return nil
	}
	return fmt.Errorf("%q is not an https URL without query or fragment", v)
}

func parseAPIRoot(c *loading, v string) error {
	v = strings.TrimSuffix(v, "/")
	if v == "" {
		return nil
	}
	if err := httpsURL(v); err != nil {
		return err
	}
	c.APIRoot, c.explicitAPIRoot = v, true
	return nil
}

func parseIssuer(c *loading, v string) error {
	if v == "" {
		return nil
	}
	if err := httpsURL(v); err != nil {
		return err
	}
	c.Issuer = v
	return nil
}

// parseMethodPriority accepts a comma-separated list of PSK, PKI and OAUTH, each at most once.
func parseMethodPriority(c *loading, v string) error {
	list := ParseList(v)
	for i, m := range list {
		if !capif.IsKnownSecurityMethod(m) || slices.Contains(list[:i], m) {
			return fmt.Errorf("%q is not a list of %s, each at most once", v, strings.Join(capif.KnownSecurityMethods, ", "))
		}
	}
	c.SecurityMethodPriority = list
	return nil
}

// namespaceChars are the characters CloudWatch allows in a namespace.
const namespaceChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-/#: "

func parseNamespace(c *loading, v string) error {
	if v == "" || len(v) > 255 || strings.Trim(v, namespaceChars) != "" || strings.HasPrefix(v, "AWS/") {
		return fmt.Errorf("%q is not a CloudWatch namespace (1-255 of A-Za-z0-9 . - _ / # : space, not AWS/)", v)
	}
	c.MetricsNamespace = v
	return nil
}

func str(field func(*loading) *string) func(*loading, string) error {
	return func(c *loading, v string) error { *field(c) = v; return nil }
}

func choice(field func(*loading) *string, allowed ...string) func(*loading, string) error {
	return func(c *loading, v string) error {
		for _, a := range allowed {
			if v == a {
				*field(c) = v
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func boolean(field func(*loading) *bool) func(*loading, string) error {
	return func(c *loading, v string) error {
		switch strings.ToLower(v) {
		case "true", "1", "yes":
			*field(c) = true
		case "false", "0", "no":
			*field(c) = false
		default:
			return fmt.Errorf("%q is not true or false", v)
		}
		return nil
	}
}

func duration(field func(*loading) *time.Duration, zeroOK bool) func(*loading, string) error {
	return func(c *loading, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d == 0 && !zeroOK {
			if zeroOK {
				return fmt.Errorf("%q is not a duration ≥ 0", v)
			}
			return fmt.Errorf("%q is not a positive duration", v)
		}
		*field(c) = d
		return nil
	}
}

// flagValue records a flag's text; parsing happens with the environment's values, in Load.
type flagValue struct {
	set    func(string)
	text   string
	isBool bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	return f.text
}

func (f *flagValue) Set(v string) error { f.text = v; f.set(v); return nil }
func (f *flagValue) IsBoolFlag() bool   { return f.isBool }
