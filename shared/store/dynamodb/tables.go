package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DefaultTablePrefix is the table name prefix of local runs (shared/settings declares where the
// names come from: a prefix, or the SAM template's explicit names).
const DefaultTablePrefix = "capif-"

// Key attribute names, one per table.
const (
	keyContexts = "apiInvokerId"
	keyRegistry = "pk"
	keyOutbox   = "id"
)

// Tables names the three tables of the store.
type Tables struct {
	Contexts string // security contexts, by apiInvokerId
	Registry string // principals, AEF catalogues, service APIs, interface index
	Outbox   string // owed notifications
}

// TablesWithPrefix derives the table names from prefix: prefix+"contexts", …
func TablesWithPrefix(prefix string) Tables {
	return Tables{Contexts: prefix + "contexts", Registry: prefix + "registry", Outbox: prefix + "outbox"}
}

func (t Tables) validate() error {
	names := []string{t.Contexts, t.Registry, t.Outbox}
	if slices.Contains(names, "") {
		return fmt.Errorf("dynamodb store: every table needs a name, got %+v", t)
	}
	if t.Contexts == t.Registry || t.Contexts == t.Outbox || t.Registry == t.Outbox {
		return fmt.Errorf("dynamodb store: the three tables need distinct names, got %+v", t)
	}
	return nil
}

// TableDefinitions is the schema of the tables named with prefix; see Tables.Definitions.
func TableDefinitions(prefix string) []ddb.CreateTableInput {
	return TablesWithPrefix(prefix).Definitions()
}

// Definitions is the exact schema CreateTables creates and the SAM template must declare: one
// string partition key per table, no sort key, no index, on-demand capacity. Every access is by
// key (BatchGetItem, conditional writes, transactions); only the admin path scans.
func (t Tables) Definitions() []ddb.CreateTableInput {
	def := func(name, key string) ddb.CreateTableInput {
		return ddb.CreateTableInput{
			TableName:            aws.String(name),
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(key), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(key), KeyType: types.KeyTypeHash}},
			BillingMode:          types.BillingModePayPerRequest,
		}
	}
	return []ddb.CreateTableInput{
		def(t.Contexts, keyContexts),
		def(t.Registry, keyRegistry),
		def(t.Outbox, keyOutbox),
	}
}

// CreateTables creates every missing table with Definitions and waits until all are active. A
// table that exists with another key schema is an error (it would fail every request later).
// This is the local runner's -create-tables; deployed stacks get their tables from template.yaml.
func (s *Store) CreateTables(ctx context.Context) error {
	for _, def := range s.tables.Definitions() {
		name := aws.ToString(def.TableName)
		out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: def.TableName})
		var missing *types.ResourceNotFoundException
		switch {
		case errors.As(err, &missing):
			in := def
			_, err = s.client.CreateTable(ctx, &in)
			var inUse *types.ResourceInUseException
			if err != nil && !errors.As(err, &inUse) { // inUse: another process created it meanwhile
				return s.fail("CreateTable", err)
			}
			s.log.Info("dynamodb table created", "table", name)
		case err != nil:
			return s.fail("DescribeTable", err)
		default:
			if err := sameSchema(def, out.Table); err != nil {
				return fmt.Errorf("dynamodb store: table %s: %w", name, err)
			}
		}
		w := ddb.NewTableExistsWaiter(s.client, func(o *ddb.TableExistsWaiterOptions) {
			o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
		})
		if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: def.TableName}, 2*time.Minute); err != nil {
			return s.fail("DescribeTable", fmt.Errorf("waiting for table %s: %w", name, err))
		}
	}
	return nil
}

// sameSchema compares the key schema of an existing table with its definition.
func sameSchema(def ddb.CreateTableInput, got *types.TableDescription) error {
	if got == nil {
		return errors.New("DescribeTable returned no description")
	}
	key := func(ks []types.KeySchemaElement) []string {
		var out []string
		for _, k := range ks {
			out = append(out, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
		}
		slices.Sort(out)
		return out
	}
	attrs := func(ads []types.AttributeDefinition) []string {
		var out []string
		for _, a := range ads {
			out = append(out, aws.ToString(a.AttributeName)+":"+string(a.AttributeType))
		}
		slices.Sort(out)
		return out
	}
	if w, g := key(def.KeySchema), key(got.KeySchema); !slices.Equal(w, g) {
		return fmt.Errorf("key schema is %v, want %v", g, w)
	}
	if w, g := attrs(def.AttributeDefinitions), attrs(got.AttributeDefinitions); !slices.Equal(w, g) {
		return fmt.Errorf("attribute definitions are %v, want %v", g, w)
	}
	if len(got.GlobalSecondaryIndexes) > 0 || len(got.LocalSecondaryIndexes) > 0 {
		return errors.New("has secondary indexes; none are defined")
	}
	return nil
}
