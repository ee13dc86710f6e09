package lambdaapp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
)

// maxTruststore bounds the bundle read (API Gateway allows 1,000 certificates; a few MiB).
const maxTruststore = 8 << 20

// Truststore is the parsed mTLS truststore: the bundle's self-signed certificates are the
// roots, the others intermediates, as API Gateway builds chains from it.
type Truststore struct {
	PEM           []byte
	Roots         *x509.CertPool
	Intermediates *x509.CertPool
	pem           string // PEM as a string, made once: every PKI entry answered carries it
}

// ParseTruststore reads every CERTIFICATE block of a PEM bundle. A bundle without a root
// certificate, or with a block that does not parse, is refused: it would reject every caller or
// hide a broken entry.
func ParseTruststore(bundle []byte) (*Truststore, error) {
	ts := &Truststore{PEM: bundle, pem: string(bundle), Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool()}
	rest := bundle
	roots := 0
	for i := 1; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("truststore: PEM block %d is a %q, not a CERTIFICATE", i, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("truststore: certificate %d: %w", i, err)
		}
		if bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil {
			ts.Roots.AddCert(cert)
			roots++
		} else {
			ts.Intermediates.AddCert(cert)
		}
	}
	if roots == 0 {
		return nil, errors.New("truststore: the bundle holds no self-signed root certificate")
	}
	return ts, nil
}

// s3Getter is the one S3 call a function makes: at most limit+1 bytes of an object.
type s3Getter interface {
	getObject(ctx context.Context, in GetObjectInput, limit int64) ([]byte, error)
}

// fetchTruststore reads the bundle from its location.
func fetchTruststore(ctx context.Context, loc Location, client s3Getter) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if loc.File != "" {
		b, err = os.ReadFile(loc.File)
		if err != nil {
			return nil, fmt.Errorf("truststore: %w", err)
		}
		return b, nil
	}
	// A VersionID makes it s3:GetObjectVersion.
	b, err = client.getObject(ctx, GetObjectInput{Bucket: loc.Bucket, Key: loc.Key, VersionID: loc.Version}, maxTruststore)
	if err != nil {
		return nil, fmt.Errorf("truststore %s: %w", loc, err)
	}
	if len(b) > maxTruststore {
		return nil, fmt.Errorf("truststore %s: larger than %d bytes", loc, maxTruststore)
	}
	return b, nil
}

// lazyTruststore is the truststore, read and parsed on first use and kept once that succeeds; a
// failed read is tried again by the next caller.
type lazyTruststore struct {
	loc    Location
	s3     s3Getter
	logger *slog.Logger

	mu sync.Mutex
	ts *Truststore
}

// get returns the truststore. A failure that may pass (S3 throttled or unreachable, the deadline)
// wraps security.ErrUnavailable (503); an unreadable or unusable bundle does not (500).
func (l *lazyTruststore) get(ctx context.Context) (*Truststore, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ts != nil {
		return l.ts, nil
	}
	start := time.Now()
	bundle, err := fetchTruststore(ctx, l.loc, l.s3)
	if err == nil {
		var ts *Truststore
		if ts, err = ParseTruststore(bundle); err == nil {
			l.ts = ts
			l.logger.InfoContext(ctx, "truststore loaded", slog.String("truststore", l.loc.String()),
				slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000))
			return ts, nil
		}
		err = fmt.Errorf("%s: %w", l.loc, err)
	} else if awsretry.Transient(err) {
		l.logger.WarnContext(ctx, "truststore unavailable", slog.String("error", err.Error()))
		err = fmt.Errorf("%w: %w", security.ErrUnavailable, err)
	}
	return nil, err
}
