// Package kmsapp is the KMS signer as an app.Backend, so only a process that signs tokens
// (ObtainAuthorizationFunction, the runner) links the KMS client.
package kmsapp

import (
	"context"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

// Backend is the KMS signer (settings.SignerKMS) over the KMSKeyIDs setting; no network call.
var Backend = app.Backend{Name: settings.SignerKMS, Signer: open}

func open(_ context.Context, in app.Input) (security.Signer, error) {
	awsCfg, err := in.AWS()
	if err != nil {
		return nil, err
	}
	return kms.NewFromConfig(awsCfg, in.Settings.KMSKeyIDs)
}
