package lambda

import (
	"time"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
)

// Step is one part of an operation's worst case: a call with every retry exhausted, or a retry
// loop's own waiting.
type Step struct {
	What string
	Time time.Duration
}

// Operation is what one request of a deployed function may wait for, in order.
type Operation struct {
	Name  string
	Steps []Step
}

// WorstCase is the sum of the steps.
func (o Operation) WorstCase() time.Duration {
	var d time.Duration
	for _, s := range o.Steps {
		d += s.Time
	}
	return d
}

// worstCases lists each function operation's calls, as the adapters make them, priced by their
// dependency's retry policy (awsretry) when every retry is exhausted: the first request of an
// execution environment also reads the truststore. Two retry loops run above the SDK on answered
// calls, and contribute their own waiting only: the BatchGetItem rounds for UnprocessedKeys
// (DynamoDB policy) and the domain's conflict retry (security.MaxConflictWait at the default
// attempts, which the functions keep). A notification delivery takes at most notifyTimeout.
// docs/dynamodb.md shows the table; TestWorstCaseBelowTimeout keeps every sum below the
// functions' Timeout minus the deadline margin.
func worstCases(notifyTimeout time.Duration) []Operation {
	ddb, kms, s3 := awsretry.DynamoDB.WorstCase(), awsretry.KMS.WorstCase(), awsretry.S3.WorstCase()
	truststore := Step{"truststore: S3 GetObject (first request only)", s3}
	load := Step{"Load: BatchGetItem", ddb}
	unprocessed := Step{"Load: UnprocessedKeys rounds' backoff", time.Duration(awsretry.DynamoDB.Attempts-1) * awsretry.DynamoDB.MaxBackoff}
	conflicts := Step{"conflict retry: backoff of the lost races", security.MaxConflictWait(security.DefaultMaxAttempts)}
	notification := Step{"notification delivery (notify timeout)", notifyTimeout}
	return []Operation{
		{"Obtain_Security_Method PUT", []Step{truststore, load, unprocessed, {"Create: PutItem", ddb}, notification}},
		{"Obtain_Security_Method update", []Step{truststore, load, unprocessed, {"Replace: PutItem", ddb}, conflicts, notification}},
		{"Obtain_Authorization token", []Step{truststore, load, unprocessed, {"KMS Sign", kms}}},
		{"JWKS, two keys listed (a rotation)", []Step{truststore, {"KMS GetPublicKey, 2 keys", 2 * kms}}},
		{"Obtain_API_Invoker_Info", []Step{truststore, load, unprocessed}},
		{"Revoke_Authorization", []Step{truststore, load, unprocessed, {"Replace: TransactWriteItems", ddb}, conflicts, notification, {"Delivered: DeleteItem", ddb}}},
	}
}

// workerWorstCases lists what a delivery run (the worker function) may still be waiting for once
// it has stopped claiming: security.Service.DeliverDue claims nothing less than a fixed tail
// before its deadline, so a run ends before its deadline when each of these (a Due scan begun just
// before, or the attempt of the last record claimed) is shorter than that tail. The scan is priced
// as one page (1 MB of records; dead letters piling up add pages). tests/lambda keeps each below
// the tail, and the worker's Timeout minus the deadline margin above the tail plus a scan, so even
// a run whose every call is at its worst claims a record, and ends in its own report, never in a
// Lambda timeout.
func workerWorstCases(notifyTimeout time.Duration) []Operation {
	ddb := awsretry.DynamoDB.WorstCase()
	return []Operation{
		{"Delivery run: a Due scan", []Step{{"Due: Scan (one page)", ddb}}},
		{"Delivery run: one attempt", []Step{{"Claim: UpdateItem", ddb}, {"notification delivery (notify timeout)", notifyTimeout},
			{"Attempted: UpdateItem, or Delivered: DeleteItem", ddb}}},
	}
}
