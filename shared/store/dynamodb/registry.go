package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// errRace is a registry commit that lost to a concurrent writer; the change is re-run.
var errRace = errors.New("registry changed concurrently")

// Update runs fn on a regTx (read-through cache, buffered writes); the writes then commit in one
// TransactWriteItems when they fit (≤ 100 items), otherwise in ordered groups (see
// regTx.commit). A rule error (ErrRoleClash included) comes before any write, so nothing is
// written. A commit that lost to a concurrent writer runs fn again on fresh reads.
func (s *Store) Update(ctx context.Context, fn func(security.RegistryTx) error) error {
	return s.registryChange(ctx, "Update", func(tx *regTx) error { return fn(tx) })
}

// registryChange runs apply on a fresh regTx and commits it, again from scratch when a
// concurrent registry writer invalidated what it read (bounded, then 503).
func (s *Store) registryChange(ctx context.Context, op string, apply func(*regTx) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		tx := &regTx{s: s, ctx: ctx, op: op, read: map[string]*regRecord{}, write: map[string]*regWrite{}}
		if err := apply(tx); err != nil {
			return err
		}
		err := tx.commit()
		if !errors.Is(err, errRace) {
			return err
		}
		if attempt >= s.attempts {
			return fmt.Errorf("dynamodb %s: %w: %w", op, security.ErrUnavailable, err)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return s.fail(op, err)
		}
	}
}

// regRecord is a registry item as read (nil in regTx.read: known to be absent).
type regRecord struct {
	version int64
	role    string
	doc     types.AttributeValue
}

// regWrite is a buffered write: doc nil deletes the item.
type regWrite struct {
	kind string
	role string
	doc  types.AttributeValue
}

// regTx implements security.RegistryTx on DynamoDB: reads go through to strongly consistent
// GetItem/BatchGetItem once per key, writes are buffered until commit.
type regTx struct {
	s     *Store
	ctx   context.Context
	op    string
	read  map[string]*regRecord
	write map[string]*regWrite
	order []string                  // keys in first-write order
	extra []types.TransactWriteItem // non-registry items committed with the first group
	gone  map[string]bool           // contexts DeleteContext already added to extra
}

var _ security.RegistryTx = (*regTx)(nil)

func (tx *regTx) record(item map[string]types.AttributeValue) (*regRecord, error) {
	if item == nil {
		return nil, nil
	}
	var row registryItem
	if err := attributevalue.UnmarshalMap(item, &row); err != nil {
		return nil, err
	}
	return &regRecord{version: row.Version, role: row.Role, doc: item[attrDoc]}, nil
}

// Prefetch reads every key not yet known in as few BatchGetItem requests as possible, so the
// rules that follow mostly hit the cache.
func (tx *regTx) Prefetch(keys []security.RecordKey) error {
	var pks []string
	for _, k := range keys {
		pks = append(pks, registryKey(recordKinds[k.Kind], k.ID))
	}
	return tx.prefetch(pks)
}

// recordKinds maps the domain's record kinds to key prefixes.
var recordKinds = map[security.RecordKind]string{
	security.RecordPrincipal: kindPrincipal, security.RecordAEF: kindAEF, security.RecordAPI: kindAPI, security.RecordInterface: kindInterface,
}

func (tx *regTx) prefetch(pks []string) error {
	var keys []itemKey
	for _, pk := range pks {
		if _, known := tx.read[pk]; !known {
			keys = append(keys, itemKey{tx.s.tables.Registry, pk})
		}
	}
	if len(keys) == 0 {
		return nil
	}
	found, err := tx.s.batchGet(tx.ctx, tx.op, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if tx.read[k.key], err = tx.record(found[k]); err != nil {
			return fmt.Errorf("dynamodb %s: %w", tx.op, err)
		}
	}
	return nil
}

// fetch returns the record of pk as stored when the change began (nil: absent), reading it with
// a consistent GetItem the first time.
func (tx *regTx) fetch(pk string) (*regRecord, error) {
	if rec, known := tx.read[pk]; known {
		return rec, nil
	}
	out, err := tx.s.client.GetItem(tx.ctx, &ddb.GetItemInput{
		TableName: aws.String(tx.s.tables.Registry), Key: tx.s.key(tx.s.tables.Registry, pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, tx.s.fail(tx.op+"/GetItem", err)
	}
	rec, err := tx.record(out.Item)
	if err != nil {
		return nil, fmt.Errorf("dynamodb %s: %w", tx.op, err)
	}
	tx.read[pk] = rec
	return rec, nil
}

// lookup returns the current doc of pk (nil: absent): the buffered write if any, else as stored.
func (tx *regTx) lookup(pk string) (types.AttributeValue, error) {
	if w, ok := tx.write[pk]; ok {
		return w.doc, nil
	}
	rec, err := tx.fetch(pk)
	if err != nil || rec == nil {
		return nil, err
	}
	return rec.doc, nil
}

func (tx *regTx) get(pk string, v any) error {
	doc, err := tx.lookup(pk)
	if err != nil {
		return err
	}
	if doc == nil {
		return security.ErrNotFound
	}
	if err := decodeDoc(doc, v); err != nil {
		return fmt.Errorf("dynamodb %s: %s: %w", tx.op, pk, err)
	}
	return nil
}

func (tx *regTx) put(pk, kind, role string, v any) error {
	doc, err := encodeDoc(v)
	if err != nil {
		return fmt.Errorf("dynamodb %s: %w", tx.op, err)
	}
	tx.buffer(pk, &regWrite{kind: kind, role: role, doc: doc})
	return nil
}

func (tx *regTx) del(pk, kind string) error {
	tx.buffer(pk, &regWrite{kind: kind})
	return nil
}

func (tx *regTx) buffer(pk string, w *regWrite) {
	if _, ok := tx.write[pk]; !ok {
		tx.order = append(tx.order, pk)
	}
	tx.write[pk] = w
}

func (tx *regTx) GetPrincipal(id string) (*security.Principal, error) {
	var p security.Principal
	if err := tx.get(registryKey(kindPrincipal, id), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (tx *regTx) PutPrincipal(p *security.Principal) error {
	return tx.put(registryKey(kindPrincipal, p.ID), kindPrincipal, string(p.Role), p)
}

func (tx *regTx) DeletePrincipal(id string) error {
	return tx.del(registryKey(kindPrincipal, id), kindPrincipal)
}

func (tx *regTx) GetAEF(aefID string) (*security.AEF, error) {
	var a security.AEF
	if err := tx.get(registryKey(kindAEF, aefID), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// PutAEF stores the catalogue; an empty one is deleted (absent means "publishes nothing", as in
// the embedded store).
func (tx *regTx) PutAEF(a *security.AEF) error {
	if len(a.APIs) == 0 {
		return tx.del(registryKey(kindAEF, a.AefID), kindAEF)
	}
	return tx.put(registryKey(kindAEF, a.AefID), kindAEF, "", a)
}

func (tx *regTx) GetAPI(apiID string) (*capif.ServiceAPIDescription, error) {
	var d capif.ServiceAPIDescription
	if err := tx.get(registryKey(kindAPI, apiID), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (tx *regTx) PutAPI(d *capif.ServiceAPIDescription) error {
	return tx.put(registryKey(kindAPI, d.APIID), kindAPI, "", d)
}

func (tx *regTx) DeleteAPI(apiID string) error {
	return tx.del(registryKey(kindAPI, apiID), kindAPI)
}

func (tx *regTx) GetInterface(key string) ([]security.PublishedAPI, error) {
	var d interfaceDoc
	if err := tx.get(registryKey(kindInterface, key), &d); err != nil {
		return nil, err
	}
	if d.Key != key {
		return nil, security.ErrNotFound
	}
	return d.APIs, nil
}

func (tx *regTx) PutInterface(key string, apis []security.PublishedAPI) error {
	if len(apis) == 0 {
		return tx.del(registryKey(kindInterface, key), kindInterface)
	}
	return tx.put(registryKey(kindInterface, key), kindInterface, "", interfaceDoc{Key: key, APIs: apis})
}

// DeleteContext adds the removal of an invoker's security context to the commit: a Delete on
// the version read, or a check that none exists, so a context written meanwhile is a race; and
// the outbox records owe returns for it, in the same transaction.
func (tx *regTx) DeleteContext(apiInvokerID string, owe func(*security.SecurityContext) ([]security.Owed, error)) error {
	if !keyOK(apiInvokerID) || tx.gone[apiInvokerID] {
		return nil // no such context can exist, or its removal is already part of the commit
	}
	if tx.gone == nil {
		tx.gone = map[string]bool{}
	}
	tx.gone[apiInvokerID] = true
	table := aws.String(tx.s.tables.Contexts)
	key := tx.s.key(tx.s.tables.Contexts, apiInvokerID)
	out, err := tx.s.client.GetItem(tx.ctx, &ddb.GetItemInput{TableName: table, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return tx.s.fail(tx.op+"/GetItem", err)
	}
	if out.Item == nil {
		tx.extra = append(tx.extra, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: table, Key: key,
			ConditionExpression: aws.String("attribute_not_exists(#k)"), ExpressionAttributeNames: map[string]string{"#k": keyContexts}}})
		return nil
	}
	sc, err := decodeContext(out.Item)
	if err != nil {
		return fmt.Errorf("dynamodb %s: %w", tx.op, err)
	}
	tx.extra = append(tx.extra, types.TransactWriteItem{Delete: &types.Delete{TableName: table, Key: key,
		ConditionExpression: aws.String("#v = :v"), ExpressionAttributeNames: versionIs, ExpressionAttributeValues: versionValue(sc.Version)}})
	if owe == nil {
		return nil
	}
	owed, err := owe(sc)
	if err != nil {
		return err
	}
	return tx.Owe(owed)
}

// Owe adds the outbox records to the commit, each on attribute_not_exists (a clashing id would
// silently replace a notification).
func (tx *regTx) Owe(owed []security.Owed) error {
	for _, o := range owed {
		oi, err := outboxItemOf(o, tx.s.now().Unix())
		if err != nil {
			return fmt.Errorf("dynamodb %s: %w", tx.op, err)
		}
		tx.extra = append(tx.extra, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(tx.s.tables.Outbox), Item: oi,
			ConditionExpression: aws.String("attribute_not_exists(#k)"), ExpressionAttributeNames: map[string]string{"#k": keyOutbox}}})
	}
	return nil
}

// PutRevokedCertificate adds the revocation's item to the commit: unconditional (revoking twice
// is revoking), with the TTL attribute at its Until.
func (tx *regTx) PutRevokedCertificate(c *security.RevokedCertificate) error {
	doc, err := encodeDoc(c)
	if err != nil {
		return fmt.Errorf("dynamodb %s: %w", tx.op, err)
	}
	item, err := attributevalue.MarshalMap(registryItem{PK: registryKey(kindRevoked, c.Key), Kind: kindRevoked, Version: 1})
	if err != nil {
		return fmt.Errorf("dynamodb %s: %w", tx.op, err)
	}
	item[attrDoc], item[attrExpiresAt] = doc, num(c.Until().Unix())
	tx.extra = append(tx.extra, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(tx.s.tables.Registry), Item: item}})
	return nil
}

// commit writes the buffered changes. Every item is conditional on what was read: absent items
// on attribute_not_exists, present ones on their version (principals also on their role, so one
// id never holds both roles). Writes that change nothing are dropped; principals read but not
// written are re-checked (ConditionCheck) because the role rule depended on them.
//
// Up to 100 items commit in one TransactWriteItems: atomic. A larger change commits in groups of
// at most 100 items, in this order: principals (with any context removal), AEF catalogues and
// interface index entries, then service API records. Each group is atomic and conditional; if a
// later group fails, re-running the same change completes it, because the API records, written
// last, still describe what was previously published and so drive the clean-up of the index.
func (tx *regTx) commit() error {
	var principals, catalogues, apis []types.TransactWriteItem
	emitted := map[string]bool{}
	for _, pk := range tx.order {
		w := tx.write[pk]
		item, err := tx.writeItem(pk, w)
		if err != nil {
			return err
		}
		if item == nil {
			continue
		}
		emitted[pk] = true
		switch w.kind {
		case kindPrincipal:
			principals = append(principals, *item)
		case kindAPI:
			apis = append(apis, *item)
		default:
			catalogues = append(catalogues, *item)
		}
	}
	if len(tx.extra)+len(emitted) == 0 {
		return nil // nothing changes (e.g. the same document imported again)
	}
	// Principals the rules relied on but that do not change are checked, not written: the role
	// rule depended on them.
	for _, pk := range slices.Sorted(maps.Keys(tx.read)) {
		if emitted[pk] || !strings.HasPrefix(pk, kindPrincipal) {
			continue
		}
		c := tx.condition(tx.read[pk], "")
		principals = append(principals, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
			TableName: aws.String(tx.s.tables.Registry), Key: tx.s.key(tx.s.tables.Registry, pk),
			ConditionExpression: c.expr, ExpressionAttributeNames: c.names, ExpressionAttributeValues: c.values}})
	}
	all := slices.Concat(tx.extra, principals, catalogues, apis)
	var groups [][]types.TransactWriteItem
	if len(all) <= maxTxItems && txBytes(all) <= maxTxBytes {
		groups = [][]types.TransactWriteItem{all}
	} else {
		for _, g := range [][]types.TransactWriteItem{slices.Concat(tx.extra, principals), catalogues, apis} {
			groups = append(groups, split(g)...)
		}
		tx.s.log.Info("registry change split into transactions", "op", tx.op, "items", len(all), "transactions", len(groups))
	}
	for i, g := range groups {
		if err := tx.commitGroup(g); err != nil {
			if i > 0 {
				tx.s.log.Warn("registry change partly committed; running it again completes it", "op", tx.op, "committed", i, "of", len(groups))
			}
			return err
		}
	}
	return nil
}

func (tx *regTx) commitGroup(g []types.TransactWriteItem) error {
	_, err := tx.s.client.TransactWriteItems(tx.ctx, &ddb.TransactWriteItemsInput{TransactItems: g})
	var tce *types.TransactionCanceledException
	switch {
	case errors.As(err, &tce):
		err = tx.s.canceled(tx.ctx, tx.op, tce, func(int, types.CancellationReason) error { return errRace })
		if errors.Is(err, security.ErrConflict) {
			return errRace
		}
		return err
	case err != nil:
		return tx.s.fail(tx.op+"/TransactWriteItems", err)
	}
	return nil
}

type condition struct {
	expr   *string
	names  map[string]string
	values map[string]types.AttributeValue
}

// condition is the precondition of writing over rec (nil: absent); role, when set, must match.
func (tx *regTx) condition(rec *regRecord, role string) condition {
	if rec == nil {
		return condition{expr: aws.String("attribute_not_exists(#k)"), names: map[string]string{"#k": keyRegistry}}
	}
	c := condition{expr: aws.String("#v = :v"), names: map[string]string{"#v": attrVersion}, values: versionValue(rec.version)}
	if role != "" {
		c.expr = aws.String("#v = :v AND #r = :r")
		c.names["#r"] = attrRole
		c.values[":r"] = &types.AttributeValueMemberS{Value: role}
	}
	return c
}

// writeItem turns a buffered write into a transaction item; nil when it would change nothing.
func (tx *regTx) writeItem(pk string, w *regWrite) (*types.TransactWriteItem, error) {
	rec, err := tx.fetch(pk) // cached: the rules read an item before they write it
	if err != nil {
		return nil, err
	}
	table := aws.String(tx.s.tables.Registry)
	if w.doc == nil {
		if rec == nil {
			return nil, nil
		}
		c := tx.condition(rec, "")
		return &types.TransactWriteItem{Delete: &types.Delete{TableName: table, Key: tx.s.key(tx.s.tables.Registry, pk),
			ConditionExpression: c.expr, ExpressionAttributeNames: c.names, ExpressionAttributeValues: c.values}}, nil
	}
	if rec != nil && rec.role == w.role && sameDoc(rec.doc, w.doc) {
		return nil, nil
	}
	version := int64(1)
	role := "" // a principal may only be overwritten by the same role
	if rec != nil {
		version, role = rec.version+1, w.role
	}
	item, err := attributevalue.MarshalMap(registryItem{PK: pk, Kind: w.kind, Version: version, Role: w.role})
	if err != nil {
		return nil, fmt.Errorf("dynamodb %s: %w", tx.op, err)
	}
	item[attrDoc] = w.doc
	c := tx.condition(rec, role)
	return &types.TransactWriteItem{Put: &types.Put{TableName: table, Item: item,
		ConditionExpression: c.expr, ExpressionAttributeNames: c.names, ExpressionAttributeValues: c.values}}, nil
}

func txBytes(items []types.TransactWriteItem) int {
	n := 0
	for _, it := range items {
		if it.Put != nil {
			for k, v := range it.Put.Item {
				n += len(k) + docSize(v)
			}
		}
		n += 100 // key, condition and framing
	}
	return n
}

// split cuts a group into transactions within the item and size limits.
func split(items []types.TransactWriteItem) [][]types.TransactWriteItem {
	var out [][]types.TransactWriteItem
	var cur []types.TransactWriteItem
	for _, it := range items {
		if len(cur) == maxTxItems || (len(cur) > 0 && txBytes(append(cur[:len(cur):len(cur)], it)) > maxTxBytes) {
			out = append(out, cur)
			cur = nil
		}
		cur = append(cur, it)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Records scans the registry table for the principals and the service APIs (a consistent Scan
// filtered by kind: admin use, never a request path), ordered by id.
func (s *Store) Records(ctx context.Context) (security.RegistryRecords, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var out security.RegistryRecords
	p := ddb.NewScanPaginator(s.client, &ddb.ScanInput{
		TableName: aws.String(s.tables.Registry), ConsistentRead: aws.Bool(true),
		FilterExpression:         aws.String("#kind IN (:principal, :api, :revoked)"),
		ExpressionAttributeNames: map[string]string{"#kind": "kind"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":principal": &types.AttributeValueMemberS{Value: kindPrincipal},
			":api": &types.AttributeValueMemberS{Value: kindAPI}, ":revoked": &types.AttributeValueMemberS{Value: kindRevoked}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return security.RegistryRecords{}, s.fail("Records/Scan", err)
		}
		for _, it := range page.Items {
			kind, _ := it["kind"].(*types.AttributeValueMemberS)
			var err error
			switch {
			case kind == nil:
			case kind.Value == kindPrincipal:
				var pr security.Principal
				if err = decodeDoc(it[attrDoc], &pr); err == nil {
					out.Principals = append(out.Principals, pr)
				}
			case kind.Value == kindAPI:
				var d capif.ServiceAPIDescription
				if err = decodeDoc(it[attrDoc], &d); err == nil {
					out.APIs = append(out.APIs, d)
				}
			case kind.Value == kindRevoked:
				var c security.RevokedCertificate
				if err = decodeDoc(it[attrDoc], &c); err == nil {
					out.RevokedCertificates = append(out.RevokedCertificates, c)
				}
			}
			if err != nil {
				return security.RegistryRecords{}, fmt.Errorf("dynamodb Records: %w", err)
			}
		}
	}
	slices.SortFunc(out.Principals, func(a, b security.Principal) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(out.APIs, func(a, b capif.ServiceAPIDescription) int { return strings.Compare(a.APIID, b.APIID) })
	slices.SortFunc(out.RevokedCertificates, func(a, b security.RevokedCertificate) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}
