package dynamodb

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// An outbox item written before delivery state was kept has only id, apiInvokerId, createdAt
// and the doc of the old shape: it is due at once, can be claimed, and decodes with zero state.
func TestOldShapeOutboxItemIsDue(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	id := "old-" + time.Now().Format("150405.000000000")
	doc := `{"id":"` + id + `","apiInvokerId":"inv-old","destination":"https://inv.example.com/n","notification":{"apiInvokerId":"inv-old","aefId":"aef-1","apiIds":["api-1"],"cause":"UNEXPECTED_REASON"}}`
	_, err := s.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.tables.Outbox), Item: map[string]types.AttributeValue{
		"id": &types.AttributeValueMemberS{Value: id}, "apiInvokerId": &types.AttributeValueMemberS{Value: "inv-old"},
		"createdAt": &types.AttributeValueMemberN{Value: "1700000000"}, attrDoc: &types.AttributeValueMemberS{Value: doc},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Delivered(context.Background(), id) })
	now := time.Now()
	due, err := s.Due(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, o := range due {
		if o.ID == id {
			found = true
			if o.Attempts != 0 || o.Dead || !o.NextAttempt.IsZero() || !o.ClaimedUntil.IsZero() || o.Notification.AefID != "aef-1" || o.Destination == "" {
				t.Errorf("decoded %+v", o)
			}
			if err := s.Claim(ctx, o, now, now.Add(time.Minute)); err != nil {
				t.Errorf("Claim of an old-shape item: %v", err)
			}
		}
	}
	if !found {
		t.Fatalf("the old-shape item is not due: %+v", due)
	}
}

// decodeOwedPrevious is the outbox decoder of the previous release, frozen: it read the record
// from the doc and the state that conditions test from the attributes. Both releases may run
// side by side during a deploy, so each must read the other's items as they are meant.
func decodeOwedPrevious(item map[string]types.AttributeValue) (security.Owed, error) {
	var o security.Owed
	if err := decodeDoc(item[attrDoc], &o); err != nil {
		return security.Owed{}, fmt.Errorf("outbox item: %w", err)
	}
	var row outboxItem
	if err := attributevalue.UnmarshalMap(item, &row); err != nil {
		return security.Owed{}, fmt.Errorf("outbox item %q: %w", o.ID, err)
	}
	o.Attempts, o.Dead = row.Attempts, row.Dead
	o.NextAttempt, o.ClaimedUntil = fromMillis(row.NextAttempt), fromMillis(row.ClaimedUntil)
	return o, nil
}

// outboxItemPrevious is how the previous release wrote an outbox item: the state in the
// attributes and, again, in the doc.
func outboxItemPrevious(o security.Owed, now int64) (map[string]types.AttributeValue, error) {
	return withDoc(outboxItem{ID: o.ID, APIInvokerID: o.APIInvokerID, CreatedAt: now, Attempts: o.Attempts,
		NextAttempt: millis(o.NextAttempt), ClaimedUntil: millis(o.ClaimedUntil), Dead: o.Dead}, o)
}

// Each shape of outbox item (the oldest, without state attributes; the previous release's, with
// the state in the doc too; this release's, in the attributes only) reads the same through this
// release's decoder and the previous one's, is due, and goes through a claim and a failed
// attempt, after which both decoders still agree: neither release loses or repeats a delivery
// of the other's items. A doc whose state went stale (the previous release's after a claim)
// never wins over the attributes.
func TestOutboxItemShapesReadAlike(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	created := now.Add(-time.Hour)
	record := func(id string) security.Owed {
		return security.Owed{ID: id, APIInvokerID: "inv-shape", Destination: "https://inv.example.com/n",
			Notification: capif.SecurityNotification{APIInvokerID: "inv-shape", AefID: "aef-1", APIIDs: []string{"api-1"}, Cause: capif.UnexpectedReason},
			CreatedAt:    created, WindowFrom: created, NextAttempt: now.Add(-time.Minute)}
	}
	suffix := now.Format("150405.000000000")
	shapes := map[string]func(id string) (map[string]types.AttributeValue, error){
		"oldest": func(id string) (map[string]types.AttributeValue, error) {
			doc := `{"id":"` + id + `","apiInvokerId":"inv-shape","destination":"https://inv.example.com/n","notification":{"apiInvokerId":"inv-shape","aefId":"aef-1","apiIds":["api-1"],"cause":"UNEXPECTED_REASON"}}`
			return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}, "apiInvokerId": &types.AttributeValueMemberS{Value: "inv-shape"},
				"createdAt": &types.AttributeValueMemberN{Value: "1700000000"}, attrDoc: &types.AttributeValueMemberS{Value: doc}}, nil
		},
		"previous release": func(id string) (map[string]types.AttributeValue, error) {
			// Claimed once and released by a failed attempt; its doc still says claimed and
			// dead (a stale copy) while the attributes say due.
			o := record(id)
			it, err := outboxItemPrevious(o, created.Unix())
			if err != nil {
				return nil, err
			}
			stale := o
			stale.ClaimedUntil, stale.Dead, stale.Attempts = now.Add(time.Hour), true, 7
			it[attrDoc], err = encodeDoc(stale)
			return it, err
		},
		"this release": func(id string) (map[string]types.AttributeValue, error) {
			return outboxItemOf(record(id), created.Unix())
		},
	}
	for name, shape := range shapes {
		t.Run(name, func(t *testing.T) {
			id := "shape-" + strings.ReplaceAll(name, " ", "-") + "-" + suffix
			item, err := shape(id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.tables.Outbox), Item: item}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Delivered(context.Background(), id) })
			read := func(when string) security.Owed {
				t.Helper()
				out, err := s.client.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.tables.Outbox), Key: s.key(s.tables.Outbox, id), ConsistentRead: aws.Bool(true)})
				if err != nil {
					t.Fatal(err)
				}
				mine, err1 := decodeOwed(out.Item)
				prev, err2 := decodeOwedPrevious(out.Item)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(mine, prev) {
					t.Fatalf("%s: this release reads %+v (%v), the previous one %+v (%v)", when, mine, err1, prev, err2)
				}
				return mine
			}
			o := read("as written")
			if o.Attempts != 0 || o.Dead || !o.ClaimedUntil.IsZero() || o.Notification.AefID != "aef-1" {
				t.Fatalf("as written: %+v", o)
			}
			due, err := s.Due(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(due, func(d security.Owed) bool { return d.ID == id }) {
				t.Fatal("not due")
			}
			until := now.Add(time.Minute)
			if err := s.Claim(ctx, o, now, until); err != nil {
				t.Fatalf("Claim: %v", err)
			}
			if got := read("claimed"); !got.ClaimedUntil.Equal(until) {
				t.Fatalf("claimed: %+v", got)
			}
			o.Attempts, o.LastError, o.NextAttempt = 1, "destination answered 503", now.Add(30*time.Second)
			if o.CreatedAt.IsZero() {
				o.CreatedAt, o.WindowFrom = now, now
			}
			if err := s.Attempted(ctx, o, until); err != nil {
				t.Fatalf("Attempted: %v", err)
			}
			got := read("attempted")
			if got.Attempts != 1 || got.Dead || !got.ClaimedUntil.IsZero() || !got.NextAttempt.Equal(o.NextAttempt) || got.LastError != o.LastError {
				t.Fatalf("attempted: %+v", got)
			}
			// Written now, the doc holds no state: nothing in it can go stale.
			out, err := s.client.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.tables.Outbox), Key: s.key(s.tables.Outbox, id), ConsistentRead: aws.Bool(true)})
			if err != nil {
				t.Fatal(err)
			}
			doc := out.Item[attrDoc].(*types.AttributeValueMemberS).Value
			for _, member := range []string{`"attempts"`, `"nextAttempt"`, `"claimedUntil"`, `"dead"`} {
				if strings.Contains(doc, member) {
					t.Errorf("the doc still holds %s: %s", member, doc)
				}
			}
		})
	}
}
