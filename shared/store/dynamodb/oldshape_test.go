package dynamodb

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
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
	due, err := s.Due(ctx, now, 1000)
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
