// Package lambdaapp is what every Lambda function of the service shares: its configuration from
// the environment (shared/settings), the caller's certificate from API Gateway's mutual TLS, the
// lazily read truststore, the request deadline and the API Gateway proxy wrapper. A
// functions/<name>/main.go only names the operation's router:
//
//	func main() { lambdaapp.Main(httpapi.ObtainSecurityMethod) }
package lambdaapp

import (
	"github.com/capifcore/capif-security/shared/settings"
)

// Config is a function's configuration.
type Config struct {
	// Settings are the function's settings (settings.Function), from template.yaml's
	// environment. Its DeadlineMargin is kept back from the Lambda deadline for every request,
	// so an AWS call that runs out of time ends in a 503 answer rather than a Lambda timeout.
	Settings settings.Config
	// Truststore names the CA bundle that API Gateway's mutual TLS trusts: an S3 object or a
	// local file, never both.
	Truststore Location
}

// Location is where a PEM object (the truststore, the CCF's certificate, the AEF CA) is read
// from: an S3 object or a local file, never both.
type Location struct {
	Bucket, Key string // S3 object
	// Version is the object's S3 VersionId, "" for the latest. For the truststore, the one API
	// Gateway's mutual TLS was deployed with (template.yaml's TruststoreVersion), so the
	// functions re-verify callers against the very bundle the gateway checked them with, also
	// after a rotation.
	Version string
	File    string // local file
}

func (l Location) String() string {
	if l.File != "" {
		return l.File
	}
	if l.Version != "" {
		return "s3://" + l.Bucket + "/" + l.Key + "?versionId=" + l.Version
	}
	return "s3://" + l.Bucket + "/" + l.Key
}

// ConfigFromEnv reads a function's configuration (settings.Load for settings.Function). Every
// problem is reported at once, so a misconfigured function fails its init with one clear
// message.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	s, _, err := settings.Load(settings.Function, nil, getenv, settings.Options{Name: "function"})
	if err != nil {
		return Config{}, err
	}
	return configOf(s), nil
}

// configOf is the configuration of a function's settings.
func configOf(s settings.Config) Config {
	return Config{Settings: s, Truststore: locationOf(s.TruststoreURI, s.TruststoreVersion, s.TruststoreFile)}
}

// locationOf is an s3:// URI (checked by settings.Load) at version, else file.
func locationOf(uri, version, file string) Location {
	if uri == "" {
		return Location{File: file}
	}
	l := Location{Version: version}
	l.Bucket, l.Key, _ = settings.ParseS3URI(uri)
	return l
}
