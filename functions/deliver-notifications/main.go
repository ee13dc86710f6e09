// Command deliver-notifications is the notification delivery worker of the CAPIF_Security_API:
// a Lambda function with no API route, invoked every minute by its schedule (template.yaml), that
// delivers the revocation notifications still owed (retries with backoff, dead letters).
// Wiring only; everything shared is in shared/lambdaapp. Built by `make build-<LogicalId>`.
package main

import (
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/lambdaapp"
)

// kmsapp.CCF: the CCF's client certificate towards AEFs, its key in KMS (pushes are retried here).
func main() { lambdaapp.MainWorker(kmsapp.CCF) }
