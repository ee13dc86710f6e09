// Package dynamodb implements security.Store and security.Registry on Amazon DynamoDB: three
// tables (contexts, registry, outbox), strongly consistent reads, conditional writes on a version
// attribute, and one transaction for a change and the notifications it owes. docs/dynamodb.md
// explains the design.
//
// Request budget per port call (what a Lambda invocation pays):
//
//	Load                 1 BatchGetItem (one more per 100 keys, and per round of UnprocessedKeys)
//	Create               1 PutItem
//	Replace, no owed     1 PutItem (DeleteItem when the context has no entries left)
//	Replace with owed    1 TransactWriteItems (context + outbox records)
//	Delivered            1 DeleteItem
//
// Every request follows awsretry.DynamoDB (bounded attempts, each with its own timeout, all
// within the caller's deadline); dynamodbtest.Recorder counts what is actually sent.
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/security"
)

// DefaultTimeout bounds a call whose ctx has no deadline (Options.Timeout).
const DefaultTimeout = 10 * time.Second

const (
	maxBatchGetKeys = 100 // BatchGetItem limit
	maxTxItems      = 100 // TransactWriteItems limit
	maxTxBytes      = 3 << 20
)

// unprocessedRounds bounds the BatchGetItem rounds for UnprocessedKeys before answering 503: the
// DynamoDB policy's attempts, with its backoff between rounds.
var unprocessedRounds = awsretry.DynamoDB.Attempts

// Options configures a Store.
type Options struct {
	// Tables names the tables (TablesWithPrefix, or the settings' explicit names); required.
	Tables Tables
	Logger *slog.Logger
	// Timeout bounds a call whose ctx has no deadline (callers normally pass the Lambda deadline
	// minus a margin), so a store call never hangs.
	Timeout time.Duration
	// ClientOptions are applied last to the DynamoDB client (tests add dynamodbtest's
	// recorder and fault middleware here).
	ClientOptions []func(*ddb.Options)
}

// Store is a security.Store and security.Registry on DynamoDB. Safe for concurrent use.
type Store struct {
	client   *ddb.Client
	tables   Tables
	log      *slog.Logger
	timeout  time.Duration
	now      func() time.Time
	attempts int // registry changes re-run after losing a race
	keySetPK string
}

var (
	_ security.Store    = (*Store)(nil)
	_ security.Registry = (*Store)(nil)
)

// New builds a Store from an SDK configuration (region, credentials and the endpoint, e.g.
// AWS_ENDPOINT_URL_DYNAMODB, come from there). It makes no AWS call: Lambda cold starts stay
// cheap and a missing table shows on the first request.
func New(cfg aws.Config, opts Options) (*Store, error) {
	if err := opts.Tables.validate(); err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	optFns := append([]func(*ddb.Options){func(o *ddb.Options) {
		// The DynamoDB policy; a write that met a running transaction on its item may simply
		// be repeated.
		o.Retryer = retry.AddWithErrorCodes(awsretry.DynamoDB.Retryer(), "TransactionConflictException")
		o.HTTPClient = awsretry.DynamoDB.HTTPClient(o.HTTPClient)
		o.APIOptions = append(o.APIOptions, awsretry.DynamoDB.CountThrottles) // per-request metrics
	}}, opts.ClientOptions...)
	return &Store{
		client:   ddb.NewFromConfig(cfg, optFns...),
		tables:   opts.Tables,
		log:      opts.Logger,
		timeout:  opts.Timeout,
		now:      time.Now,
		attempts: 5,
		keySetPK: keySetPK,
	}, nil
}

// Tables returns the table names in use.
func (s *Store) Tables() Tables { return s.tables }

func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// --- errors -----------------------------------------------------------------------------------

// fail wraps an SDK error; transient ones wrap security.ErrUnavailable (503 + Retry-After).
// Messages name the operation, never item contents.
func (s *Store) fail(op string, err error) error {
	if awsretry.Transient(err) {
		s.log.Warn("dynamodb unavailable", "op", op, "error", err.Error())
		return fmt.Errorf("dynamodb %s: %w: %w", op, security.ErrUnavailable, err)
	}
	if cause, ok := awsretry.Outage(err); ok {
		// Not the caller's fault and not a bug: a 503, and the operator is told what to fix.
		s.log.Error("dependency unavailable", "dependency", "DynamoDB", "op", op,
			"tables", []string{s.tables.Contexts, s.tables.Registry, s.tables.Outbox}, "cause", cause, "error", err.Error())
		return fmt.Errorf("dynamodb %s: %w: %s: %w", op, security.ErrUnavailable, cause, err)
	}
	return fmt.Errorf("dynamodb %s: %w", op, err)
}

func unavailable(op, why string) error {
	return fmt.Errorf("dynamodb %s: %w: %s", op, security.ErrUnavailable, why)
}

// --- reads ------------------------------------------------------------------------------------

// itemKey names one item: its table and the value of the table's string partition key.
type itemKey struct{ table, key string }

func (s *Store) keyAttr(table string) string {
	switch table {
	case s.tables.Contexts:
		return keyContexts
	case s.tables.Outbox:
		return keyOutbox
	}
	return keyRegistry
}

func (s *Store) key(table, value string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{s.keyAttr(table): &types.AttributeValueMemberS{Value: value}}
}

// batchGet reads keys with strongly consistent BatchGetItem requests: one per 100 keys, plus one
// per round of UnprocessedKeys (retried with backoff, bounded, within ctx). Missing items are
// absent from the result.
func (s *Store) batchGet(ctx context.Context, op string, keys []itemKey) (map[itemKey]map[string]types.AttributeValue, error) {
	seen := make(map[itemKey]bool, len(keys))
	uniq := keys[:0:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	found := make(map[itemKey]map[string]types.AttributeValue, len(uniq))
	for start := 0; start < len(uniq); start += maxBatchGetKeys {
		req := map[string]types.KeysAndAttributes{}
		for _, k := range uniq[start:min(start+maxBatchGetKeys, len(uniq))] {
			ka := req[k.table]
			ka.Keys = append(ka.Keys, s.key(k.table, k.key))
			ka.ConsistentRead = aws.Bool(true)
			req[k.table] = ka
		}
		for round := 0; len(req) > 0; round++ {
			if round > 0 {
				if round >= unprocessedRounds {
					return nil, unavailable(op+"/BatchGetItem", "keys still unprocessed after retries")
				}
				if err := sleep(ctx, backoff(round)); err != nil {
					return nil, s.fail(op+"/BatchGetItem", err)
				}
			}
			out, err := s.client.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, s.fail(op+"/BatchGetItem", err)
			}
			for table, items := range out.Responses {
				attr := s.keyAttr(table)
				for _, it := range items {
					if k, ok := it[attr].(*types.AttributeValueMemberS); ok {
						found[itemKey{table, k.Value}] = it
					}
				}
			}
			if len(out.UnprocessedKeys) > 0 { // DynamoDB's throttling of a batch
				awsretry.DynamoDB.NoteThrottle(ctx)
			}
			req = out.UnprocessedKeys
		}
	}
	return found, nil
}

// backoff is the delay before round n (n ≥ 1) of a retry loop of ours: full jitter, capped at
// the DynamoDB policy's MaxBackoff.
func backoff(n int) time.Duration {
	ceiling := min(25*time.Millisecond<<n, awsretry.DynamoDB.MaxBackoff)
	return time.Duration(rand.Int64N(int64(ceiling))) + time.Millisecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Load reads the caller's principal, the context and the requested catalogue and interface
// index items in one strongly consistent BatchGetItem (more only above 100 keys or when DynamoDB
// leaves keys unprocessed). Every value is decoded afresh, so the caller owns what it gets.
func (s *Store) Load(ctx context.Context, q security.Query) (*security.Snapshot, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var keys []itemKey
	if keyOK(q.APIInvokerID) {
		keys = append(keys, itemKey{s.tables.Contexts, q.APIInvokerID})
	}
	reg := func(kind, id string) itemKey { return itemKey{s.tables.Registry, registryKey(kind, id)} }
	if q.CallerID != "" {
		keys = append(keys, reg(kindPrincipal, q.CallerID))
	}
	for _, id := range q.AefIDs {
		if id != "" {
			keys = append(keys, reg(kindAEF, id))
		}
	}
	for _, k := range q.InterfaceKeys {
		keys = append(keys, reg(kindInterface, k))
	}
	for _, id := range q.Principals {
		if id != "" && id != q.CallerID {
			keys = append(keys, reg(kindPrincipal, id))
		}
	}
	if q.CertKey != "" {
		keys = append(keys, reg(kindRevoked, q.CertKey))
	}
	snap := &security.Snapshot{AEFs: map[string]*security.AEF{}, Interfaces: map[string][]security.PublishedAPI{}, Principals: map[string]*security.Principal{}}
	if len(keys) == 0 {
		return snap, nil
	}
	found, err := s.batchGet(ctx, "Load", keys)
	if err != nil {
		return nil, err
	}
	if it := found[itemKey{s.tables.Contexts, q.APIInvokerID}]; it != nil && keyOK(q.APIInvokerID) && !excludes(it, q.ForAEF) {
		if snap.Context, err = decodeContext(it); err != nil {
			return nil, fmt.Errorf("dynamodb Load: %w", err)
		}
	}
	if it := found[reg(kindPrincipal, q.CallerID)]; it != nil && q.CallerID != "" {
		var p security.Principal
		if err := decodeDoc(it[attrDoc], &p); err != nil {
			return nil, fmt.Errorf("dynamodb Load: principal: %w", err)
		}
		snap.Caller = &p
	}
	if it := found[reg(kindRevoked, q.CertKey)]; it != nil && q.CertKey != "" {
		var c security.RevokedCertificate
		if err := decodeDoc(it[attrDoc], &c); err != nil {
			return nil, fmt.Errorf("dynamodb Load: revoked certificate: %w", err)
		}
		snap.RevokedCert = &c
	}
	for _, id := range q.Principals {
		if it := found[reg(kindPrincipal, id)]; it != nil && snap.Principals[id] == nil {
			var p security.Principal
			if err := decodeDoc(it[attrDoc], &p); err != nil {
				return nil, fmt.Errorf("dynamodb Load: principal: %w", err)
			}
			snap.Principals[id] = &p
		}
	}
	for _, id := range q.AefIDs {
		if it := found[reg(kindAEF, id)]; it != nil && snap.AEFs[id] == nil {
			var a security.AEF
			if err := decodeDoc(it[attrDoc], &a); err != nil {
				return nil, fmt.Errorf("dynamodb Load: AEF catalogue: %w", err)
			}
			snap.AEFs[id] = &a
		}
	}
	for _, k := range q.InterfaceKeys {
		if it := found[reg(kindInterface, k)]; it != nil {
			var d interfaceDoc
			if err := decodeDoc(it[attrDoc], &d); err != nil {
				return nil, fmt.Errorf("dynamodb Load: interface index: %w", err)
			}
			if d.Key == k && len(d.APIs) > 0 { // the key check guards the digest form of long keys
				snap.Interfaces[k] = d.APIs
			}
		}
	}
	return snap, nil
}

// --- context writes ---------------------------------------------------------------------------

var versionIs = map[string]string{"#v": attrVersion}

func versionValue(v int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: fmt.Sprint(v)}}
}

// Create stores sc at version 1 with a PutItem conditional on the key being absent.
func (s *Store) Create(ctx context.Context, sc *security.SecurityContext) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !keyOK(sc.APIInvokerID) {
		return fmt.Errorf("dynamodb Create: apiInvokerId must be 1 to %d bytes long", maxKeyBytes)
	}
	next := *sc
	next.Version = 1
	item, err := contextItemOf(&next, s.now().Unix())
	if err != nil {
		return fmt.Errorf("dynamodb Create: %w", err)
	}
	_, err = s.client.PutItem(ctx, &ddb.PutItemInput{
		TableName:                           aws.String(s.tables.Contexts),
		Item:                                item,
		ConditionExpression:                 aws.String("attribute_not_exists(#k)"),
		ExpressionAttributeNames:            map[string]string{"#k": keyContexts},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		if !landed(ccf.Item, item) {
			return fmt.Errorf("context %q: %w", sc.APIInvokerID, security.ErrExists)
		}
	case err != nil:
		return s.fail("Create/PutItem", err)
	}
	sc.Version = 1
	return nil
}

// landed reports whether the item a condition failed on is the one this call wrote: the SDK
// repeated a request whose first attempt committed but whose answer was lost (a timeout or a
// 500), so the write did happen and is reported as done. The write id, not the content, decides:
// two writers may well compute the same content (two identical revocations).
func landed(old, mine map[string]types.AttributeValue) bool {
	return len(old) > 0 && mine != nil && sameWrite(old, mine)
}

// lost turns the old item returned by a failed version condition into the port's error.
func lost(id string, old, mine map[string]types.AttributeValue) error {
	switch {
	case len(old) == 0:
		return fmt.Errorf("context %q: %w", id, security.ErrNotFound)
	case landed(old, mine):
		return nil
	}
	return fmt.Errorf("context %q changed concurrently: %w", id, security.ErrConflict)
}

// Replace writes sc if the stored version is still sc.Version, as version+1; a context without
// entries is deleted. Without owed notifications that is one conditional PutItem or DeleteItem;
// with them one TransactWriteItems holding the context change and every outbox record, so a
// revocation never commits without its notifications. Failed conditions return the old item
// (ALL_OLD), which tells ErrNotFound from ErrConflict without another read.
func (s *Store) Replace(ctx context.Context, sc *security.SecurityContext, owed []security.Owed) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	id := sc.APIInvokerID
	if !keyOK(id) {
		return fmt.Errorf("context %q: %w", id, security.ErrNotFound)
	}
	if len(owed)+1 > maxTxItems {
		return fmt.Errorf("dynamodb Replace: %d notifications exceed one transaction", len(owed))
	}
	now := s.now().Unix()
	next := *sc
	next.Version = sc.Version + 1
	var item map[string]types.AttributeValue // nil: delete
	if len(sc.Entries) > 0 {
		var err error
		if item, err = contextItemOf(&next, now); err != nil {
			return fmt.Errorf("dynamodb Replace: %w", err)
		}
	}
	table, key := aws.String(s.tables.Contexts), s.key(s.tables.Contexts, id)
	cond, values := aws.String("#v = :v"), versionValue(sc.Version)

	if len(owed) == 0 {
		var err error
		op := "Replace/PutItem"
		if item == nil {
			op = "Replace/DeleteItem"
			_, err = s.client.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: table, Key: key,
				ConditionExpression: cond, ExpressionAttributeNames: versionIs, ExpressionAttributeValues: values,
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
		} else {
			_, err = s.client.PutItem(ctx, &ddb.PutItemInput{TableName: table, Item: item,
				ConditionExpression: cond, ExpressionAttributeNames: versionIs, ExpressionAttributeValues: values,
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
		}
		var ccf *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &ccf):
			if err := lost(id, ccf.Item, item); err != nil {
				return err
			}
		case err != nil:
			return s.fail(op, err)
		}
		sc.Version = next.Version
		return nil
	}

	tx := make([]types.TransactWriteItem, 0, len(owed)+1)
	if item == nil {
		tx = append(tx, types.TransactWriteItem{Delete: &types.Delete{TableName: table, Key: key,
			ConditionExpression: cond, ExpressionAttributeNames: versionIs, ExpressionAttributeValues: values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}})
	} else {
		tx = append(tx, types.TransactWriteItem{Put: &types.Put{TableName: table, Item: item,
			ConditionExpression: cond, ExpressionAttributeNames: versionIs, ExpressionAttributeValues: values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}})
	}
	for _, o := range owed {
		oi, err := outboxItemOf(o, now)
		if err != nil {
			return fmt.Errorf("dynamodb Replace: %w", err)
		}
		tx = append(tx, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.tables.Outbox), Item: oi,
			ConditionExpression: aws.String("attribute_not_exists(#k)"), ExpressionAttributeNames: map[string]string{"#k": keyOutbox}}})
	}
	// The SDK fills ClientRequestToken, so its own retries of this call are idempotent.
	_, err := s.client.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: tx})
	var tce *types.TransactionCanceledException
	switch {
	case errors.As(err, &tce):
		if err := s.canceled(ctx, "Replace", tce, func(i int, r types.CancellationReason) error {
			if i == 0 {
				return lost(id, r.Item, item)
			}
			return fmt.Errorf("outbox record %q: %w", owed[i-1].ID, security.ErrExists)
		}); err != nil {
			return err
		}
	case err != nil:
		return s.fail("Replace/TransactWriteItems", err)
	}
	sc.Version = next.Version
	return nil
}

// canceled maps the reasons of a cancelled transaction: condFailed handles a failed condition
// of item i; a transaction conflict is a lost race (the domain re-reads and retries); throttling
// is 503.
func (s *Store) canceled(ctx context.Context, op string, tce *types.TransactionCanceledException, condFailed func(i int, r types.CancellationReason) error) error {
	for i, r := range tce.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "", "None":
			continue
		case "ConditionalCheckFailed":
			return condFailed(i, r)
		case "TransactionConflict":
			return fmt.Errorf("dynamodb %s: item %d is in another transaction: %w", op, i, security.ErrConflict)
		case "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded":
			awsretry.DynamoDB.NoteThrottle(ctx)
			s.log.Warn("dynamodb unavailable", "op", op+"/TransactWriteItems", "reason", aws.ToString(r.Code))
			return unavailable(op+"/TransactWriteItems", aws.ToString(r.Code))
		default:
			return fmt.Errorf("dynamodb %s/TransactWriteItems: item %d: %s: %w", op, i, aws.ToString(r.Code), tce)
		}
	}
	return s.fail(op+"/TransactWriteItems", tce)
}

// Delivered deletes an outbox record. Unconditional on purpose: outbox records are never
// updated, so nothing can be lost, and a repeated confirmation must succeed.
func (s *Store) Delivered(ctx context.Context, owedID string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !keyOK(owedID) {
		return nil
	}
	_, err := s.client.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.tables.Outbox), Key: s.key(s.tables.Outbox, owedID)})
	if err != nil {
		return s.fail("Delivered/DeleteItem", err)
	}
	return nil
}

// ContextsWithAPI scans the contexts table (admin use only) for contexts whose apiIds set holds
// apiID. The scan reads consistently, so a context written just before is seen.
func (s *Store) ContextsWithAPI(ctx context.Context, apiID string) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	p := ddb.NewScanPaginator(s.client, &ddb.ScanInput{
		TableName:                 aws.String(s.tables.Contexts),
		ConsistentRead:            aws.Bool(true),
		FilterExpression:          aws.String("contains(#a, :api)"),
		ProjectionExpression:      aws.String("#k"),
		ExpressionAttributeNames:  map[string]string{"#a": attrAPIIDs, "#k": keyContexts},
		ExpressionAttributeValues: map[string]types.AttributeValue{":api": &types.AttributeValueMemberS{Value: apiID}},
	})
	ids := []string{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.fail("ContextsWithAPI/Scan", err)
		}
		for _, it := range page.Items {
			if k, ok := it[keyContexts].(*types.AttributeValueMemberS); ok {
				ids = append(ids, k.Value)
			}
		}
	}
	return ids, nil
}

// Pending lists every undelivered outbox record (a consistent Scan: for a delivery retrier and
// the contract tests, never on a request path).
func (s *Store) Pending(ctx context.Context) ([]security.Owed, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.scanOutbox(ctx, "Pending", &ddb.ScanInput{})
}
