package lambdaapp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/capifcore/capif-security/shared/app/sdkconfig"
	"github.com/capifcore/capif-security/shared/notify"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// maxPEM bounds the read of the CCF's certificate chain and of the AEF CA bundle.
const maxPEM = 1 << 20

// ccfExpiryWarning is how long before its expiry the CCF's certificate is warned about (and the
// CcfCertificateDaysLeft alarm of template.yaml fires at 14 days).
const ccfExpiryWarning = 30 * 24 * time.Hour

// ccf is a function's identity towards AEFs: the certificate (CAPIF_CCF_CERT_URI at
// CAPIF_CCF_CERT_VERSION, or CAPIF_CCF_CERT_FILE) with its key in KMS (CAPIF_CCF_KMS_KEY), and
// the roots that verify AEFs (CAPIF_AEF_CA, else the system roots). Read on the first push
// (notify keeps it; a failure is read again by the next push), never at start.
type ccf struct {
	set    settings.Config
	build  func(awsCfg aws.Config, keyRef, name string, chainPEM []byte) (*tls.Certificate, error) // a CCF back end's
	aws    *sdkconfig.Provider
	getenv func(string) string
	logger *slog.Logger
	// notAfter is the certificate's expiry once read (unix seconds; 0 before): the worker's run
	// line publishes the days left.
	notAfter atomic.Int64

	mu   sync.Mutex
	read *notify.CCFIdentity
}

// configured reports whether the deployment gave the functions a CCF certificate.
func (c *ccf) configured() bool { return c.set.CCFKMSKey != "" }

// identity is the certificate and the AEF roots, read once per execution environment (a
// failure is read again by the next call).
func (c *ccf) identity(ctx context.Context) (notify.CCFIdentity, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read != nil {
		return *c.read, nil
	}
	id, err := c.load(ctx)
	if err != nil {
		return id, err
	}
	c.read = &id
	return id, nil
}

// load reads the certificate and the AEF roots.
func (c *ccf) load(ctx context.Context) (notify.CCFIdentity, error) {
	awsCfg, err := c.aws.Get()
	if err != nil {
		return notify.CCFIdentity{}, err
	}
	var s3 s3Getter
	read := func(what string, loc Location) ([]byte, error) {
		if loc.File != "" {
			return os.ReadFile(loc.File)
		}
		if s3 == nil {
			s3 = newS3Reader(awsCfg, sdkconfig.Endpoint(c.getenv, "S3"))
		}
		b, err := s3.getObject(ctx, GetObjectInput{Bucket: loc.Bucket, Key: loc.Key, VersionID: loc.Version}, maxPEM)
		if err == nil && len(b) > maxPEM {
			err = fmt.Errorf("larger than %d bytes", maxPEM)
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, loc, err)
		}
		return b, nil
	}
	chain, err := read("the CCF's certificate", locationOf(c.set.CCFCertURI, c.set.CCFCertVersion, c.set.CCFCertFile))
	if err != nil {
		return notify.CCFIdentity{}, err
	}
	cert, err := c.build(awsCfg, c.set.CCFKMSKey, c.set.CCFName, chain)
	if err != nil {
		return notify.CCFIdentity{}, err
	}
	id := notify.CCFIdentity{Certificate: func() (*tls.Certificate, error) { return cert, nil }}
	if c.set.AEFCA != "" {
		uri, file := "", c.set.AEFCA
		if strings.HasPrefix(c.set.AEFCA, "s3://") {
			uri, file = c.set.AEFCA, ""
		}
		bundle, err := read("the AEF CA", locationOf(uri, c.set.AEFCAVersion, file))
		if err != nil {
			return notify.CCFIdentity{}, err
		}
		id.AEFRoots = x509.NewCertPool()
		if !id.AEFRoots.AppendCertsFromPEM(bundle) {
			return notify.CCFIdentity{}, fmt.Errorf("the AEF CA %s holds no PEM certificate", c.set.AEFCA)
		}
	}
	c.notAfter.Store(cert.Leaf.NotAfter.Unix())
	if left := time.Until(cert.Leaf.NotAfter); left < ccfExpiryWarning {
		c.logger.WarnContext(ctx, "the CCF certificate expires soon: renew it (docs/deploy.md), or pushes to AEFs fail",
			slog.Time("notAfter", cert.Leaf.NotAfter), slog.Int("daysLeft", int(left.Hours()/24)))
	}
	return id, nil
}

// daysLeft is the certificate's remaining validity in days, and whether it is known yet.
func (c *ccf) daysLeft(now time.Time) (float64, bool) {
	na := c.notAfter.Load()
	if na == 0 {
		return 0, false
	}
	return time.Unix(na, 0).Sub(now).Hours() / 24, true
}

// push is what revocations owe AEFs in this function: nothing without a certificate.
func (c *ccf) push() security.AEFPush {
	if c.configured() {
		return security.AEFPushInline
	}
	return security.AEFPushOff
}
