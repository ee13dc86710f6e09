// Package dynamodbtest holds DynamoDB client middleware for tests, beside the adapter as
// net/http/httptest sits beside net/http: Recorder counts the requests a client sends (request
// budgets) with the IAM permissions each needs (the template's IAM test), and InjectFault fails
// chosen attempts as DynamoDB would (throttling, deadlines, service errors). Both install as
// client options, e.g. dynamodb.Options.ClientOptions.
package dynamodbtest

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
)

// Permission is one IAM action on one table that a request needs.
type Permission struct {
	Action string // e.g. "dynamodb:BatchGetItem"
	Table  string
}

// Call is one DynamoDB request as sent: every SDK attempt is a Call of its own.
type Call struct {
	Operation   string // the API operation, e.g. "TransactWriteItems"
	Permissions []Permission
}

// Recorder records the DynamoDB requests a client sends, with the IAM permissions each needs. It
// counts request budgets in tests and lets an IAM test compare what the code does with what the
// template grants. Add it with Options.ClientOptions = append(…, rec.ClientOption()).
type Recorder struct {
	mu    sync.Mutex
	calls []Call
}

// ClientOption installs the recorder on a DynamoDB client.
func (r *Recorder) ClientOption() func(*ddb.Options) {
	return func(o *ddb.Options) { o.APIOptions = append(o.APIOptions, r.register) }
}

type permsKey struct{}

func (r *Recorder) register(stack *middleware.Stack) error {
	// Initialize sees the typed input once per call; Finalize (after the retry middleware) runs
	// once per attempt, so retries are counted as the requests they are.
	err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("capifRecorderInput",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			ctx = middleware.WithStackValue(ctx, permsKey{}, Permissions(awsmiddleware.GetOperationName(ctx), in.Parameters))
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	if err != nil {
		return err
	}
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("capifRecorder",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			perms, _ := middleware.GetStackValue(ctx, permsKey{}).([]Permission)
			r.mu.Lock()
			r.calls = append(r.calls, Call{Operation: awsmiddleware.GetOperationName(ctx), Permissions: perms})
			r.mu.Unlock()
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

// Calls returns the requests recorded so far, in order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Operations returns the operation names of the recorded requests, in order.
func (r *Recorder) Operations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.calls))
	for i, c := range r.calls {
		out[i] = c.Operation
	}
	return out
}

// Reset forgets every recorded request.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

// Permissions lists the IAM actions and tables a request needs. Transactions need the action of
// each item (there is no IAM action for TransactWriteItems itself); batch reads need
// BatchGetItem on each table.
func Permissions(operation string, input any) []Permission {
	var out []Permission
	add := func(action string, table *string) {
		p := Permission{Action: "dynamodb:" + action, Table: aws.ToString(table)}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	switch in := input.(type) {
	case *ddb.GetItemInput:
		add("GetItem", in.TableName)
	case *ddb.PutItemInput:
		add("PutItem", in.TableName)
	case *ddb.DeleteItemInput:
		add("DeleteItem", in.TableName)
	case *ddb.UpdateItemInput:
		add("UpdateItem", in.TableName)
	case *ddb.QueryInput:
		add("Query", in.TableName)
	case *ddb.ScanInput:
		add("Scan", in.TableName)
	case *ddb.BatchGetItemInput:
		for table := range in.RequestItems {
			add("BatchGetItem", aws.String(table))
		}
	case *ddb.BatchWriteItemInput:
		for table := range in.RequestItems {
			add("BatchWriteItem", aws.String(table))
		}
	case *ddb.TransactWriteItemsInput:
		for _, it := range in.TransactItems {
			switch {
			case it.Put != nil:
				add("PutItem", it.Put.TableName)
			case it.Delete != nil:
				add("DeleteItem", it.Delete.TableName)
			case it.Update != nil:
				add("UpdateItem", it.Update.TableName)
			case it.ConditionCheck != nil:
				add("ConditionCheckItem", it.ConditionCheck.TableName)
			}
		}
	case *ddb.TransactGetItemsInput:
		for _, it := range in.TransactItems {
			if it.Get != nil {
				add("GetItem", it.Get.TableName)
			}
		}
	case *ddb.DescribeTableInput:
		add("DescribeTable", in.TableName)
	case *ddb.CreateTableInput:
		add("CreateTable", in.TableName)
	default:
		add(operation, nil)
	}
	slices.SortFunc(out, func(a, b Permission) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.Action, b.Action))
	})
	return out
}

// InjectFault returns a client option that calls fault before every attempt of every request
// (inside the SDK's retry loop); a non-nil error fails that attempt as if DynamoDB had answered
// it, so the retryer treats it like the real thing. For tests of throttling, deadlines and
// service errors.
func InjectFault(fault func(ctx context.Context, operation string) error) func(*ddb.Options) {
	return func(o *ddb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("capifFault",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if err := fault(ctx, awsmiddleware.GetOperationName(ctx)); err != nil {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, err
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	}
}
