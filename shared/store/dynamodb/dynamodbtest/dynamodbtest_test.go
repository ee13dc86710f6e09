package dynamodbtest

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestPermissions(t *testing.T) {
	perm := func(action, table string) Permission { return Permission{Action: "dynamodb:" + action, Table: table} }
	tests := []struct {
		name  string
		op    string
		input any
		want  []Permission
	}{
		{name: "batch get", op: "BatchGetItem",
			input: &ddb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"r": {}, "c": {}}},
			want:  []Permission{perm("BatchGetItem", "c"), perm("BatchGetItem", "r")}},
		{name: "transaction: each item's action", op: "TransactWriteItems",
			input: &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
				{Put: &types.Put{TableName: aws.String("c")}}, {Put: &types.Put{TableName: aws.String("o")}}, {Put: &types.Put{TableName: aws.String("o")}},
				{Delete: &types.Delete{TableName: aws.String("c")}}, {ConditionCheck: &types.ConditionCheck{TableName: aws.String("r")}}}},
			want: []Permission{perm("DeleteItem", "c"), perm("PutItem", "c"), perm("PutItem", "o"), perm("ConditionCheckItem", "r")}},
		{name: "put", op: "PutItem", input: &ddb.PutItemInput{TableName: aws.String("c")}, want: []Permission{perm("PutItem", "c")}},
		{name: "scan", op: "Scan", input: &ddb.ScanInput{TableName: aws.String("c")}, want: []Permission{perm("Scan", "c")}},
		{name: "unknown input", op: "ListTables", input: &ddb.ListTablesInput{}, want: []Permission{perm("ListTables", "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Permissions(tc.op, tc.input); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Permissions = %v, want %v", got, tc.want)
			}
		})
	}
}
