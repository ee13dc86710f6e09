// Command obtain-authorization is a Lambda function of the CAPIF_Security_API behind API Gateway
// (REST proxy events): POST securities/{securityId}/token and
// GET /.well-known/jwks.json.
// Wiring only; everything shared (configuration, identity, truststore, deadline, proxy) is in
// shared/lambdaapp. Built by `make build-<LogicalId>` (see template.yaml).
package main

import (
	"github.com/capifcore/capif-security/shared/app/kmsapp"
	"github.com/capifcore/capif-security/shared/httpapi"
	"github.com/capifcore/capif-security/shared/lambdaapp"
)

func main() { lambdaapp.Main(httpapi.ObtainAuthorization, kmsapp.Backend, kmsapp.Envelope) }
