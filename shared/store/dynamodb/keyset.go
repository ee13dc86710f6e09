package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/security"
)

// The key set is one registry item: read with the BatchGetItem the token function already
// makes, changed by one conditional UpdateItem (the only write the rotation role may make, and
// only on this key).
const (
	keySetPK   = "K#signing"
	kindKeySet = "keyset"
)

var _ security.KeySet = (*Store)(nil)

// LoadKeySet reads the key set (strongly consistent).
func (s *Store) LoadKeySet(ctx context.Context) (security.SigningKeys, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k := itemKey{s.tables.Registry, s.keySetPK}
	found, err := s.batchGet(ctx, "LoadKeySet", []itemKey{k})
	if err != nil {
		return security.SigningKeys{}, err
	}
	it, ok := found[k]
	if !ok {
		return security.SigningKeys{}, nil
	}
	var row registryItem
	var keys []security.SigningKey
	if err := attributevalue.UnmarshalMap(it, &row); err != nil {
		return security.SigningKeys{}, fmt.Errorf("dynamodb LoadKeySet: %w", err)
	}
	if err := decodeDoc(it[attrDoc], &keys); err != nil {
		return security.SigningKeys{}, fmt.Errorf("dynamodb LoadKeySet: %w", err)
	}
	return security.SigningKeys{Version: row.Version, Keys: keys}, nil
}

// SaveKeySet writes the set if the item is still at s.Version (absent for version 0).
func (s *Store) SaveKeySet(ctx context.Context, set security.SigningKeys) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	doc, err := encodeDoc(set.Keys)
	if err != nil {
		return fmt.Errorf("dynamodb SaveKeySet: %w", err)
	}
	// DynamoDB refuses names and values the expressions do not use.
	cond := "#v = :v"
	names := map[string]string{"#doc": attrDoc, "#v": attrVersion, "#kind": "kind"}
	values := map[string]types.AttributeValue{":doc": doc, ":next": num(set.Version + 1), ":kind": &types.AttributeValueMemberS{Value: kindKeySet}}
	if set.Version == 0 {
		cond, names["#k"] = "attribute_not_exists(#k)", keyRegistry
	} else {
		values[":v"] = num(set.Version)
	}
	_, err = s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: aws.String(s.tables.Registry), Key: s.key(s.tables.Registry, s.keySetPK),
		UpdateExpression:          aws.String("SET #doc = :doc, #v = :next, #kind = :kind"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return fmt.Errorf("dynamodb SaveKeySet: the key set changed since version %d: %w", set.Version, security.ErrConflict)
	case err != nil:
		return s.fail("SaveKeySet/UpdateItem", err)
	}
	return nil
}
