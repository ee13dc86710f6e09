// Command rotate-signing-keys is the signing-key rotation function of signer kms-envelope: a
// Lambda function with no API route, invoked daily by its schedule (template.yaml), that
// publishes a new wrapped key when the signing one is older than KeyRotationDays and drops the
// records of keys that left the JWKS.
// Wiring only; everything shared is in shared/lambdaapp. Built by `make build-<LogicalId>`.
package main

import (
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/lambdaapp"
)

func main() { lambdaapp.MainRotator(kmsapp.Rotation) }
