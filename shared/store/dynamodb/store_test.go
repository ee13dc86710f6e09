package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/dynamodb/dynamodbtest"
)

// Adapter-specific behaviour against DynamoDB Local, beyond the contract suite.

func count(ops []string, op string) int {
	n := 0
	for _, o := range ops {
		if o == op {
			n++
		}
	}
	return n
}

// unprocessing makes DynamoDB "leave unprocessed" every item but the first of each table (all
// of them when all is set) in the next n BatchGetItem answers, as it does under load.
func unprocessing(n *atomic.Int32, all bool) func(*Options) {
	return withClientOption(func(o *ddb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("testUnprocessed",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleInitialize(ctx, in)
					res, ok := out.Result.(*ddb.BatchGetItemOutput)
					if err != nil || !ok || n.Add(-1) == -1 {
						return out, md, err
					}
					res.UnprocessedKeys = map[string]types.KeysAndAttributes{}
					for table, items := range res.Responses {
						keep := 1
						if all {
							keep = 0
						}
						if len(items) <= keep {
							continue
						}
						var keys []map[string]types.AttributeValue
						for _, it := range items[keep:] {
							for _, attr := range []string{keyContexts, keyRegistry, keyOutbox} {
								if v, ok := it[attr]; ok {
									keys = append(keys, map[string]types.AttributeValue{attr: v})
								}
							}
						}
						res.UnprocessedKeys[table] = types.KeysAndAttributes{Keys: keys, ConsistentRead: aws.Bool(true)}
						res.Responses[table] = items[:keep]
					}
					return out, md, err
				}), middleware.After)
		})
	})
}

func TestLoadBatches(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	setup := newStore(t)
	if err := admin(setup).ImportRegistry(ctx, w.doc); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, setup, &securitytest.Notifier{}, 0)
	if _, err := svc.CreateSecurityContext(ctx, security.Caller{ID: w.inv}, w.inv, w.request("https://inv.example.com/cb")); err != nil {
		t.Fatal(err)
	}
	realKeys := func() []string {
		var ks []string
		for _, d := range w.doc.ServiceAPIs {
			for _, p := range security.PublishedAPIs(d) {
				ks = append(ks, security.InterfaceKeys(p)...)
			}
		}
		return ks
	}()
	full := func(missing int) security.Query {
		q := security.Query{CallerID: w.inv, APIInvokerID: w.inv, AefIDs: []string{w.aef1, w.aef2}, InterfaceKeys: slices.Clone(realKeys)}
		for i := range missing {
			q.InterfaceKeys = append(q.InterfaceKeys, fmt.Sprintf("fqdn:missing-%d.example.com|port:|prefix:", i))
		}
		return q
	}
	check := func(t *testing.T, snap *security.Snapshot) {
		t.Helper()
		if snap.Caller == nil || snap.Context == nil || len(snap.AEFs) != 2 || len(snap.Interfaces) != len(realKeys) {
			t.Errorf("Load = caller %v, context %v, %d AEFs, %d interfaces; want all found (2 AEFs, %d interfaces)",
				snap.Caller != nil, snap.Context != nil, len(snap.AEFs), len(snap.Interfaces), len(realKeys))
		}
	}

	tests := []struct {
		name        string
		missing     int   // extra interface keys that do not exist
		unprocessed int32 // BatchGetItem answers that leave keys unprocessed (-1: every answer, every key)
		wantGets    int
		wantErr     error
	}{
		{name: "one request", wantGets: 1},
		{name: "chunks of 100 keys", missing: 250, wantGets: 3}, // 2 + 1 + 3 + 250 keys
		{name: "unprocessed keys are read again", unprocessed: 2, wantGets: 3},
		{name: "unprocessed for good is 503", unprocessed: -1, wantGets: unprocessedRounds, wantErr: security.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &dynamodbtest.Recorder{}
			var n atomic.Int32
			n.Store(tc.unprocessed)
			if tc.unprocessed < 0 {
				n.Store(1 << 30)
			}
			s := newStore(t, withRecorder(rec), unprocessing(&n, tc.unprocessed < 0))
			snap, err := s.Load(ctx, full(tc.missing))
			if got := count(rec.Operations(), "BatchGetItem"); got != tc.wantGets {
				t.Errorf("%d BatchGetItem requests, want %d", got, tc.wantGets)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Load = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			check(t, snap)
		})
	}
}

// losingAnswers commits the first attempt of each listed operation but reports it as timed out,
// as a lost answer looks to the SDK: it retries the same request.
func losingAnswers(ops ...string) func(*Options) {
	var mu sync.Mutex
	lost := map[string]bool{}
	return withClientOption(func(o *ddb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("testLostAnswer",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleFinalize(ctx, in)
					op := middleware.GetOperationName(ctx)
					mu.Lock()
					defer mu.Unlock()
					if err == nil && slices.Contains(ops, op) && !lost[op] {
						lost[op] = true
						return out, md, &smithy.GenericAPIError{Code: "RequestTimeout", Message: "injected: answer lost after commit"}
					}
					return out, md, err
				}), middleware.After)
		})
	})
}

// TestLostAnswer: a write that committed but whose answer was lost is retried by the SDK; its
// condition then fails on our own write, which the write id recognises, so the call succeeds
// and the version moves by exactly one.
func TestLostAnswer(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	rec := &dynamodbtest.Recorder{}
	s := newStore(t, withRecorder(rec), losingAnswers("PutItem", "TransactWriteItems"))
	sc := &security.SecurityContext{APIInvokerID: w.inv, NotificationDestination: "https://inv.example.com/cb", Entries: []security.Entry{
		{AefID: w.aef1, PrefSecurityMethods: []capif.SecurityMethod{capif.PKI}, SelSecurityMethod: capif.PKI,
			Targets: []security.Target{{AefID: w.aef1, APIID: w.apiA, APIName: "nameA"}, {AefID: w.aef1, APIID: w.apiB, APIName: "nameB"}}},
	}}
	if err := s.Create(ctx, sc); err != nil {
		t.Fatalf("Create with a lost answer = %v, want success", err)
	}
	sc.NotificationDestination = "https://inv.example.com/v2"
	if err := s.Replace(ctx, sc, nil); err != nil { // PutItem already lost once: this one is plain
		t.Fatal(err)
	}
	sc.Entries[0].Targets = sc.Entries[0].Targets[:1]
	owed := security.Owed{ID: "owed-" + randomHex(8), APIInvokerID: w.inv, Destination: sc.NotificationDestination,
		Notification: capif.SecurityNotification{APIInvokerID: w.inv, AefID: w.aef1, APIIDs: []string{w.apiB}, Cause: capif.UnexpectedReason}}
	if err := s.Replace(ctx, sc, []security.Owed{owed}); err != nil {
		t.Fatalf("revocation with a lost answer = %v, want success", err)
	}
	got := storedContext(t, s, w.inv)
	if got == nil || got.Version != 3 || sc.Version != 3 {
		t.Fatalf("after three writes: stored %s, caller's version %d; want version 3 in both", dump(got), sc.Version)
	}
	if p := pendingOf(t, s, w.inv); len(p) != 1 || p[0].ID != owed.ID {
		t.Errorf("outbox = %+v, want exactly the one owed record", p)
	}
	ops := rec.Operations()
	if count(ops, "PutItem") != 3 || count(ops, "TransactWriteItems") != 2 {
		t.Errorf("requests %v: want the lost PutItem and TransactWriteItems each sent twice", ops)
	}
}

// bigDoc is a registry document of 120 invokers, 10 AEFs and 30 APIs (one interface each): over
// 100 items, so its import is split into several transactions.
func bigDoc(tag string) security.RegistryDoc {
	var doc security.RegistryDoc
	for i := range 120 {
		doc.APIInvokers = append(doc.APIInvokers, security.InvokerRecord{APIInvokerID: fmt.Sprintf("inv-%s-%03d", tag, i)})
	}
	for i := range 10 {
		doc.AEFs = append(doc.AEFs, security.AEFRecord{AefID: fmt.Sprintf("aef-%s-%02d", tag, i)})
	}
	port := 443
	for i := range 30 {
		doc.ServiceAPIs = append(doc.ServiceAPIs, capif.ServiceAPIDescription{APIName: fmt.Sprintf("name%d", i), APIID: fmt.Sprintf("api-%s-%02d", tag, i),
			AefProfiles: []capif.AefProfile{{AefID: fmt.Sprintf("aef-%s-%02d", tag, i%10),
				InterfaceDescriptions: []capif.InterfaceDescription{{Fqdn: fmt.Sprintf("h%d-%s.example.com", i, tag), Port: &port}}}}})
	}
	return doc
}

// everything checks that every record of doc loads.
func everything(t *testing.T, s *Store, doc security.RegistryDoc) {
	t.Helper()
	ctx := context.Background()
	for _, inv := range doc.APIInvokers {
		snap, err := s.Load(ctx, security.Query{CallerID: inv.APIInvokerID})
		if err != nil || snap.Caller == nil || snap.Caller.Role != security.RoleInvoker {
			t.Fatalf("invoker %s: %+v, %v", inv.APIInvokerID, snap, err)
		}
	}
	q := security.Query{}
	for _, a := range doc.AEFs {
		q.AefIDs = append(q.AefIDs, a.AefID)
	}
	for _, d := range doc.ServiceAPIs {
		q.InterfaceKeys = append(q.InterfaceKeys, security.InterfaceKey(d.AefProfiles[0].InterfaceDescriptions[0]))
	}
	snap, err := s.Load(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	apis := 0
	for _, a := range snap.AEFs {
		apis += len(a.APIs)
	}
	if len(snap.AEFs) != len(doc.AEFs) || apis != len(doc.ServiceAPIs) || len(snap.Interfaces) != len(doc.ServiceAPIs) {
		t.Fatalf("loaded %d catalogues with %d APIs and %d interfaces; want %d, %d, %d",
			len(snap.AEFs), apis, len(snap.Interfaces), len(doc.AEFs), len(doc.ServiceAPIs), len(doc.ServiceAPIs))
	}
}

func TestLargeImport(t *testing.T) {
	ctx := context.Background()

	t.Run("split, then nothing to write again", func(t *testing.T) {
		rec := &dynamodbtest.Recorder{}
		s := newStore(t, withRecorder(rec))
		doc := bigDoc(randomHex(3))
		if err := admin(s).ImportRegistry(ctx, doc); err != nil {
			t.Fatal(err)
		}
		// 120 + 10 principals, 10 catalogues, 30 interfaces, 30 APIs = 200 items.
		if n := count(rec.Operations(), "TransactWriteItems"); n < 3 {
			t.Errorf("200 items written in %d transactions; at least 3 are needed", n)
		}
		everything(t, s, doc)
		rec.Reset()
		if err := admin(s).ImportRegistry(ctx, doc); err != nil {
			t.Fatal(err)
		}
		if n := count(rec.Operations(), "TransactWriteItems"); n != 0 {
			t.Errorf("re-importing the same document sent %d transactions, want none", n)
		}
	})

	t.Run("interrupted, completed by re-running", func(t *testing.T) {
		var txs atomic.Int32
		failing := newStore(t, withFault(func(_ context.Context, op string) error {
			if op == "TransactWriteItems" && txs.Add(1) == 3 {
				return &smithy.GenericAPIError{Code: "ValidationException", Message: "injected failure of the third transaction"}
			}
			return nil
		}))
		doc := bigDoc(randomHex(3))
		if err := admin(failing).ImportRegistry(ctx, doc); err == nil {
			t.Fatal("Import with a failing transaction succeeded")
		}
		s := newStore(t)
		// Principals (two transactions) committed, the catalogues (the third) did not.
		snap, err := s.Load(ctx, security.Query{CallerID: doc.APIInvokers[119].APIInvokerID, AefIDs: []string{doc.AEFs[0].AefID}})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Caller == nil || len(snap.AEFs) != 0 {
			t.Fatalf("after the interruption: caller %v, %d catalogues; want the principals only", snap.Caller != nil, len(snap.AEFs))
		}
		if err := admin(s).ImportRegistry(ctx, doc); err != nil {
			t.Fatal(err)
		}
		everything(t, s, doc)
	})

	t.Run("role clash writes nothing", func(t *testing.T) {
		s := newStore(t)
		existing := newWorld()
		if err := admin(s).ImportRegistry(ctx, existing.doc); err != nil {
			t.Fatal(err)
		}
		doc := bigDoc(randomHex(3))
		doc.AEFs = append(doc.AEFs, security.AEFRecord{AefID: existing.inv}) // an invoker as AEF, last
		if err := admin(s).ImportRegistry(ctx, doc); !errors.Is(err, security.ErrRoleClash) {
			t.Fatalf("Import = %v, want ErrRoleClash", err)
		}
		snap, err := s.Load(ctx, security.Query{CallerID: doc.APIInvokers[0].APIInvokerID, AefIDs: []string{doc.AEFs[0].AefID}})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Caller != nil || len(snap.AEFs) != 0 {
			t.Errorf("a refused import wrote records: %s", dump(snap))
		}
	})
}

// TestConcurrentImports: imports racing on one AEF catalogue and one interface index entry lose
// nothing (conditional writes + re-run).
func TestConcurrentImports(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	tag := randomHex(3)
	aef := "aef-" + tag
	port := 443
	ifc := capif.InterfaceDescription{Fqdn: "shared-" + tag + ".example.com", Port: &port}
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- admin(s).ImportRegistry(ctx, security.RegistryDoc{
				AEFs: []security.AEFRecord{{AefID: aef}},
				ServiceAPIs: []capif.ServiceAPIDescription{{APIName: fmt.Sprintf("n%d", i), APIID: fmt.Sprintf("api-%s-%d", tag, i),
					AefProfiles: []capif.AefProfile{{AefID: aef, InterfaceDescriptions: []capif.InterfaceDescription{ifc}}}}},
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, security.ErrUnavailable) {
			t.Errorf("concurrent Import: %v", err)
		}
	}
	snap, err := s.Load(ctx, security.Query{AefIDs: []string{aef}, InterfaceKeys: []string{security.InterfaceKey(ifc)}})
	if err != nil {
		t.Fatal(err)
	}
	// An import that answered 503 may be missing; every one that succeeded must be there.
	if got := len(snap.AEFs[aef].APIs); got != n {
		t.Errorf("catalogue lists %d APIs, want %d", got, n)
	}
	if got := len(snap.Interfaces[security.InterfaceKey(ifc)]); got != n {
		t.Errorf("interface index lists %d APIs, want %d", got, n)
	}
}

func TestCreateTables(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.CreateTables(ctx); err != nil { // the tables exist: nothing to do
		t.Fatalf("CreateTables on existing tables: %v", err)
	}
	out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(testTables.Registry)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sameSchema(testTables.Definitions()[1], out.Table); err != nil {
		t.Errorf("created registry table differs from its definition: %v", err)
	}

	// A table of the same name with another key is refused, not used.
	wrong := TablesWithPrefix("capif-wrong-" + randomHex(3) + "-")
	def := wrong.Definitions()[0]
	def.AttributeDefinitions[0].AttributeName = aws.String("other")
	def.KeySchema[0].AttributeName = aws.String("other")
	if _, err := s.client.CreateTable(ctx, &def); err != nil {
		t.Fatal(err)
	}
	bad := newStore(t, func(o *Options) { o.Tables = wrong })
	if err := bad.CreateTables(ctx); err == nil {
		t.Error("CreateTables accepted a contexts table keyed by another attribute")
	}
}

// TestImportChecksUnchangedPrincipals: a re-import that adds an API rewrites nothing of the
// unchanged principals but still conditions the transaction on them (their role decided it).
func TestImportChecksUnchangedPrincipals(t *testing.T) {
	ctx := context.Background()
	rec := &dynamodbtest.Recorder{}
	s := newStore(t, withRecorder(rec))
	w := newWorld()
	if err := admin(s).ImportRegistry(ctx, w.doc); err != nil {
		t.Fatal(err)
	}
	more := w.doc
	more.ServiceAPIs = append(slices.Clone(w.doc.ServiceAPIs), capif.ServiceAPIDescription{APIName: "nameD", APIID: "apiD-" + randomHex(3),
		AefProfiles: []capif.AefProfile{{AefID: w.aef2, DomainName: "d.example.com"}}})
	rec.Reset()
	if err := admin(s).ImportRegistry(ctx, more); err != nil {
		t.Fatal(err)
	}
	var tx []dynamodbtest.Call
	for _, c := range rec.Calls() {
		if c.Operation == "TransactWriteItems" {
			tx = append(tx, c)
		}
	}
	want := []dynamodbtest.Permission{{Action: "dynamodb:PutItem", Table: testTables.Registry}, {Action: "dynamodb:ConditionCheckItem", Table: testTables.Registry}}
	if len(tx) != 1 || !slices.Contains(tx[0].Permissions, want[0]) || !slices.Contains(tx[0].Permissions, want[1]) {
		t.Errorf("re-import sent %+v, want one transaction with %v", tx, want)
	}
}
