package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/security"
)

// The outbox is found by a consistent Scan, not an index: it holds only notifications not yet
// delivered (normally none, or a few per failing destination), so a scan reads a handful of
// items, while an index on the next-attempt time would need one constant partition key (a hot
// key) or a sharded one that a worker must query shard by shard. See docs/dynamodb.md.

// Attribute names of the delivery state (outboxItem).
var outboxNames = map[string]string{"#a": "attempts", "#n": "nextAttempt", "#c": "claimedUntil", "#d": "dead", "#k": keyOutbox, "#doc": attrDoc}

// dueCondition holds for a live record due at :now (attributes absent on old-shape items).
const dueCondition = "(attribute_not_exists(#d) OR #d = :f) AND (attribute_not_exists(#n) OR #n <= :now) AND (attribute_not_exists(#c) OR #c <= :now)"

// namesIn is the part of outboxNames the expressions use (DynamoDB refuses unused names).
func namesIn(exprs ...string) map[string]string {
	used := map[string]string{"#k": keyOutbox}
	for name, attr := range outboxNames {
		for _, e := range exprs {
			if strings.Contains(e, name+" ") || strings.HasSuffix(e, name) || strings.Contains(e, name+")") || strings.Contains(e, name+",") {
				used[name] = attr
			}
		}
	}
	return used
}

func num(v int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// Due scans for the due records.
func (s *Store) Due(ctx context.Context, now time.Time) ([]security.Owed, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.scanOutbox(ctx, "Due", &ddb.ScanInput{
		FilterExpression:          aws.String(dueCondition),
		ExpressionAttributeNames:  map[string]string{"#n": "nextAttempt", "#c": "claimedUntil", "#d": "dead"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":f": &types.AttributeValueMemberBOOL{Value: false}, ":now": num(now.UnixMilli())},
	})
}

// scanOutbox reads every outbox record that in (a filter; table and consistency are set here)
// selects, decoded.
func (s *Store) scanOutbox(ctx context.Context, op string, in *ddb.ScanInput) ([]security.Owed, error) {
	in.TableName, in.ConsistentRead = aws.String(s.tables.Outbox), aws.Bool(true)
	p := ddb.NewScanPaginator(s.client, in)
	var out []security.Owed
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.fail(op+"/Scan", err)
		}
		for _, it := range page.Items {
			o, err := decodeOwed(it)
			if err != nil {
				return nil, fmt.Errorf("dynamodb %s: %w", op, err)
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// update is one conditional UpdateItem of an outbox record; a failed condition is ErrConflict.
func (s *Store) update(ctx context.Context, op, id, expr, cond string, values map[string]types.AttributeValue) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !keyOK(id) {
		return fmt.Errorf("dynamodb %s: %w: outbox record %q", op, security.ErrNotFound, id)
	}
	_, err := s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: aws.String(s.tables.Outbox), Key: s.key(s.tables.Outbox, id),
		UpdateExpression: aws.String(expr), ConditionExpression: aws.String("attribute_exists(#k) AND (" + cond + ")"),
		ExpressionAttributeNames: namesIn(expr, cond), ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return fmt.Errorf("dynamodb %s: outbox record %q is held, changed or gone: %w", op, id, security.ErrConflict)
	case err != nil:
		return s.fail(op+"/UpdateItem", err)
	}
	return nil
}

// Claim sets claimedUntil on a due record whose attempts are still o.Attempts.
func (s *Store) Claim(ctx context.Context, o security.Owed, now, until time.Time) error {
	attempts := "#a = :a"
	if o.Attempts == 0 {
		attempts = "(attribute_not_exists(#a) OR #a = :a)"
	}
	return s.update(ctx, "Claim", o.ID, "SET #c = :until", dueCondition+" AND "+attempts, map[string]types.AttributeValue{
		":f": &types.AttributeValueMemberBOOL{Value: false}, ":now": num(now.UnixMilli()), ":until": num(until.UnixMilli()), ":a": num(int64(o.Attempts)),
	})
}

// Attempted stores the delivery state and releases the claim, if the record is still held.
func (s *Store) Attempted(ctx context.Context, o security.Owed, held time.Time) error {
	doc, err := encodeDoc(owedDoc(o))
	if err != nil {
		return fmt.Errorf("dynamodb Attempted: %w", err)
	}
	return s.update(ctx, "Attempted", o.ID, "SET #doc = :doc, #a = :a, #n = :n, #d = :d REMOVE #c", "#c = :held", map[string]types.AttributeValue{
		":doc": doc, ":a": num(int64(o.Attempts)), ":n": num(millis(o.NextAttempt)), ":d": &types.AttributeValueMemberBOOL{Value: o.Dead}, ":held": num(millis(held)),
	})
}

// Redrive makes a dead record due at now with a new retry window.
func (s *Store) Redrive(ctx context.Context, id string, now time.Time) error {
	o, err := s.getOwed(ctx, "Redrive", id)
	if err != nil {
		return err
	}
	if !o.Dead {
		return fmt.Errorf("dynamodb Redrive: %w: outbox record %q is not dead-lettered", security.ErrNotFound, id)
	}
	o.WindowFrom = now
	doc, err := encodeDoc(owedDoc(o))
	if err != nil {
		return fmt.Errorf("dynamodb Redrive: %w", err)
	}
	return s.update(ctx, "Redrive", id, "SET #doc = :doc, #n = :n, #d = :f REMOVE #c", "#d = :t AND #a = :a", map[string]types.AttributeValue{
		":doc": doc, ":n": num(now.UnixMilli()), ":f": &types.AttributeValueMemberBOOL{Value: false}, ":t": &types.AttributeValueMemberBOOL{Value: true}, ":a": num(int64(o.Attempts)),
	})
}

// Drop deletes a record; ErrNotFound when there is none.
func (s *Store) Drop(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !keyOK(id) {
		return fmt.Errorf("dynamodb Drop: %w: outbox record %q", security.ErrNotFound, id)
	}
	_, err := s.client.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.tables.Outbox), Key: s.key(s.tables.Outbox, id),
		ConditionExpression: aws.String("attribute_exists(#k)"), ExpressionAttributeNames: map[string]string{"#k": keyOutbox}})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return fmt.Errorf("dynamodb Drop: %w: outbox record %q", security.ErrNotFound, id)
	case err != nil:
		return s.fail("Drop/DeleteItem", err)
	}
	return nil
}

func (s *Store) getOwed(ctx context.Context, op, id string) (security.Owed, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if !keyOK(id) {
		return security.Owed{}, fmt.Errorf("dynamodb %s: %w: outbox record %q", op, security.ErrNotFound, id)
	}
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.tables.Outbox), Key: s.key(s.tables.Outbox, id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return security.Owed{}, s.fail(op+"/GetItem", err)
	}
	if out.Item == nil {
		return security.Owed{}, fmt.Errorf("dynamodb %s: %w: outbox record %q", op, security.ErrNotFound, id)
	}
	return decodeOwed(out.Item)
}
