// Package kmsapp is the KMS signer as an app.Backend, and the CCF's client certificate with
// its key in KMS, so only a process that signs tokens or pushes to AEFs links the KMS client.
package kmsapp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/envelope"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

// Backend is the KMS signer (settings.SignerKMS): the key set's records of KMS keys, or while
// the set is empty the KMSKeyIDs setting's keys. No network call until first use.
var Backend = app.Backend{Name: settings.SignerKMS, Signer: open}

// Envelope is the kms-envelope signer (settings.SignerKMSEnvelope): the key set's keys, wrapped
// under KMSWrappingKey, unwrapped once per kid and used in memory; its records of KMS keys sign
// in KMS, and while the set is empty the KMSKeyIDs setting's keys (if any) sign.
var Envelope = app.Backend{Name: settings.SignerKMSEnvelope, Signer: openEnvelope}

// CCF is the CCF's client certificate with its key in KMS (CCFCertificate), for the functions
// that push revocations to AEFs.
var CCF = app.Backend{Name: "kms-ccf", CCF: CCFCertificate}

func open(_ context.Context, in app.Input) (security.Signer, error) {
	return openSet(in, false)
}

func openEnvelope(_ context.Context, in app.Input) (security.Signer, error) {
	return openSet(in, true)
}

// openSet is the envelope signer over the store's key set, with a KMS wrapper when wrapped keys
// are to be unwrapped.
func openSet(in app.Input, wrapped bool) (security.Signer, error) {
	awsCfg, err := in.AWS()
	if err != nil {
		return nil, err
	}
	client := kms.NewClient(awsCfg)
	cfg := envelope.Config{Keys: in.KeySet, KMS: client, Windows: app.KeyWindows(in.Settings), Logger: in.Logger}
	if len(in.Settings.KMSKeyIDs) > 0 {
		if cfg.Fallback, err = kms.New(client, in.Settings.KMSKeyIDs, in.Settings.TokenAlg); err != nil {
			return nil, err
		}
	}
	if wrapped {
		if cfg.Wrapper, err = envelope.NewKMS(client, in.Settings.KMSWrappingKey, in.Settings.Stack); err != nil {
			return nil, err
		}
	}
	return envelope.New(cfg)
}

// Rotation is Manager as the rotation function runs it (lambdaapp.MainRotator).
func Rotation(in app.Input) (app.KeyRotation, error) { return Manager(in) }

// Manager changes the key set of in's store: its new keys are wrapped under KMSWrappingKey
// (none without one: signer kms records KMS keys only), and its Legacy keys are the KMSKeyIDs.
func Manager(in app.Input) (envelope.Manager, error) {
	m := envelope.Manager{Keys: in.KeySet, Alg: in.Settings.TokenAlg, Windows: app.KeyWindows(in.Settings)}
	refs := in.Settings.KMSKeyIDs
	if in.Settings.KMSWrappingKey == "" && len(refs) == 0 {
		return m, nil
	}
	awsCfg, err := in.AWS()
	if err != nil {
		return envelope.Manager{}, err
	}
	client := kms.NewClient(awsCfg)
	if len(refs) > 0 {
		m.Legacy = func(ctx context.Context) ([]security.SigningKey, error) {
			var recs []security.SigningKey
			for _, ref := range refs {
				rec, err := kms.Record(ctx, client, ref)
				if err != nil {
					return nil, err
				}
				recs = append(recs, rec)
			}
			return recs, nil
		}
	}
	if in.Settings.KMSWrappingKey != "" {
		m.Wrapper, err = envelope.NewKMS(client, in.Settings.KMSWrappingKey, in.Settings.Stack)
	}
	return m, err
}

// CCFCertificate is the CCF's client certificate towards AEFs with its key in KMS: chainPEM is
// the certificate (Subject CN name) and its intermediates, keyRef the KMS key (id, ARN or
// alias) whose public key it certifies. Handshakes sign with ECDSA P-256 SHA-256 only: the one
// signature the KMS key makes. No AWS call is made here.
func CCFCertificate(awsCfg aws.Config, keyRef, name string, chainPEM []byte) (*tls.Certificate, error) {
	var chain [][]byte
	for rest := chainPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			chain = append(chain, block.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("the CCF's certificate holds no PEM CERTIFICATE")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("the CCF's certificate: %w", err)
	}
	if leaf.Subject.CommonName != name {
		return nil, fmt.Errorf("the CCF's certificate names %q, not the CCF's name %q (CAPIF_CCF_NAME)", leaf.Subject.CommonName, name)
	}
	// The token signer's client and retry policy; a handshake has no request tally, so nothing
	// counts its throttles.
	key, err := kms.NewTLSKey(kms.NewClient(awsCfg), keyRef, leaf.PublicKey)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf,
		SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}, nil
}
