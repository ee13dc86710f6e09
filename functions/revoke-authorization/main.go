// Command revoke-authorization is a Lambda function of the CAPIF_Security_API behind API Gateway
// (REST proxy events): DELETE trustedInvokers/{apiInvokerId} and
// POST trustedInvokers/{apiInvokerId}/delete.
// Wiring only; everything shared (configuration, identity, truststore, deadline, proxy) is in
// shared/lambdaapp. Built by `make build-<LogicalId>` (see template.yaml).
package main

import (
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
)

// kmsapp.CCF: the CCF's client certificate towards AEFs, its key in KMS (revocations are pushed).
func main() { lambdaapp.Main(httpapi.RevokeAuthorization, kmsapp.CCF) }
