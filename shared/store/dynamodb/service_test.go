package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/awsretry"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/security/securitytest"
	"github.com/capifcore/capif-security/shared/store/dynamodb/dynamodbtest"
)

// These tests drive security.Service, as the Lambda handlers do, against DynamoDB Local.

// world is a registry with one invoker and two AEFs: aef1 publishes apiA and apiB, aef2 apiC.
type world struct {
	inv, secret, aef1, aef2, apiA, apiB, apiC string
	doc                                       security.RegistryDoc
}

func newWorld() *world {
	id := randomHex(4)
	w := &world{inv: "inv-" + id, secret: "s3cret-" + id, aef1: "aef1-" + id, aef2: "aef2-" + id,
		apiA: "apiA-" + id, apiB: "apiB-" + id, apiC: "apiC-" + id}
	port := 443
	ifc := func(host string) []capif.InterfaceDescription {
		return []capif.InterfaceDescription{{Fqdn: host + "-" + id + ".example.com", Port: &port, APIPrefix: "/" + host}}
	}
	methods := []capif.SecurityMethod{capif.PSK, capif.OAUTH}
	w.doc = security.RegistryDoc{
		APIInvokers: []security.InvokerRecord{{APIInvokerID: w.inv, NotificationDestination: "https://inv.example.com/cb", OnboardingSecret: w.secret}},
		AEFs:        []security.AEFRecord{{AefID: w.aef1}, {AefID: w.aef2}},
		ServiceAPIs: []capif.ServiceAPIDescription{
			{APIName: "nameA", APIID: w.apiA, AefProfiles: []capif.AefProfile{{AefID: w.aef1, SecurityMethods: methods, InterfaceDescriptions: ifc("a")}}},
			{APIName: "nameB", APIID: w.apiB, AefProfiles: []capif.AefProfile{{AefID: w.aef1, SecurityMethods: methods, InterfaceDescriptions: ifc("b")}}},
			{APIName: "nameC", APIID: w.apiC, AefProfiles: []capif.AefProfile{{AefID: w.aef2, SecurityMethods: methods, InterfaceDescriptions: ifc("c")}}},
		},
	}
	return w
}

// request asks for every API of both AEFs; dest tells updates apart.
func (w *world) request(dest string, pref ...capif.SecurityMethod) *capif.ServiceSecurity {
	if len(pref) == 0 {
		pref = []capif.SecurityMethod{capif.OAUTH}
	}
	return &capif.ServiceSecurity{NotificationDestination: dest, SecurityInfo: []capif.SecurityInformation{
		{AefID: w.aef1, PrefSecurityMethods: pref},
		{AefID: w.aef2, PrefSecurityMethods: pref},
	}}
}

func (w *world) tokenReq() capif.AccessTokenReq {
	return capif.AccessTokenReq{GrantType: "client_credentials", ClientID: w.inv, ClientSecret: w.secret}
}

func newService(t testing.TB, s *Store, n security.Notifier, maxAttempts int) *security.Service {
	t.Helper()
	return security.New(s, s, &securitytest.Signer{}, n, nil, security.Config{Issuer: "ccf-test", APIRoot: "https://ccf.example.com", MaxAttempts: maxAttempts})
}

func importWorld(t testing.TB, svc *security.Service, w *world) {
	t.Helper()
	if err := svc.ImportRegistry(context.Background(), w.doc); err != nil {
		t.Fatalf("ImportRegistry: %v", err)
	}
}

func pendingOf(t testing.TB, s *Store, inv string) []security.Owed {
	t.Helper()
	all, err := s.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(o security.Owed) bool { return o.APIInvokerID != inv })
}

func storedContext(t testing.TB, s *Store, inv string) *security.SecurityContext {
	t.Helper()
	snap, err := s.Load(context.Background(), security.Query{APIInvokerID: inv})
	if err != nil {
		t.Fatal(err)
	}
	return snap.Context
}

// TestRequestBudgets counts the DynamoDB requests each operation sends (Recorder) and logs the
// IAM permissions they need.
func TestRequestBudgets(t *testing.T) {
	rec := &dynamodbtest.Recorder{}
	s := newStore(t, withRecorder(rec))
	notifier := &securitytest.Notifier{}
	svc := newService(t, s, notifier, 0)
	w := newWorld()
	importWorld(t, svc, w)
	ctx := context.Background()

	// A revoked certificate of the invoker: every request reads its certificate key's item in its one
	// BatchGetItem, so the revocation costs no round trip.
	if err := s.Update(ctx, func(tx security.RegistryTx) error {
		return tx.PutRevokedCertificate(&security.RevokedCertificate{Key: "revoked-thumb", PrincipalID: w.inv, NotAfter: time.Now().Add(time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		run  func() error
		want []string // the request budget, in order
	}{
		{"token with a revoked certificate: refused", func() error {
			_, err := svc.ObtainAuthorization(ctx, security.Caller{ID: w.inv, CertKey: "revoked-thumb"}, w.inv, w.tokenReq())
			if err == nil {
				return errors.New("a revoked certificate got a token")
			}
			return nil
		}, []string{"BatchGetItem"}},
		{"create (PUT)", func() error {
			_, err := svc.CreateSecurityContext(ctx, security.Caller{ID: w.inv, CertKey: "thumb-inv"}, w.inv, w.request("https://inv.example.com/v1"))
			return err
		}, []string{"BatchGetItem", "PutItem"}},
		{"update (POST …/update)", func() error {
			_, err := svc.UpdateSecurityContext(ctx, security.Caller{ID: w.inv, CertKey: "thumb-inv"}, w.inv, w.request("https://inv.example.com/v2"))
			return err
		}, []string{"BatchGetItem", "PutItem"}},
		{"get (GET)", func() error {
			_, err := svc.GetInvokerInfo(ctx, security.Caller{ID: w.aef1, CertKey: "thumb-aef1"}, w.inv, security.InvokerInfoQuery{AuthenticationInfo: true, AuthorizationInfo: true})
			return err
		}, []string{"BatchGetItem"}},
		{"token", func() error {
			_, err := svc.ObtainAuthorization(ctx, security.Caller{ID: w.inv, CertKey: "thumb-inv"}, w.inv, w.tokenReq())
			return err
		}, []string{"BatchGetItem"}},
		{"revoke (POST …/delete), delivered", func() error {
			return svc.Revoke(ctx, security.Caller{ID: w.aef1, CertKey: "thumb-aef1"}, w.inv, &capif.SecurityNotification{APIInvokerID: w.inv, APIIDs: []string{w.apiA}, Cause: capif.OverlimitUsage})
		}, []string{"BatchGetItem", "TransactWriteItems", "DeleteItem"}}, // the last is Delivered
		{"revoke all (DELETE), not delivered", func() error {
			notifier.Err = errors.New("injected delivery failure")
			return svc.RevokeAll(ctx, security.Caller{ID: w.aef2, CertKey: "thumb-aef2"}, w.inv)
		}, []string{"BatchGetItem", "TransactWriteItems", "UpdateItem"}}, // the last records the failed inline attempt
	}
	for _, st := range steps {
		rec.Reset()
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := rec.Operations()
		if !slices.Equal(got, st.want) {
			t.Errorf("%s sent %v, want %v", st.name, got, st.want)
		}
		for _, c := range rec.Calls() {
			t.Logf("%-36s %-18s %v", st.name, c.Operation, c.Permissions)
		}
	}
	// The revocations really went through the outbox: one record delivered and deleted, one kept.
	if p := pendingOf(t, s, w.inv); len(p) != 1 || p[0].Notification.AefID != w.aef2 {
		t.Errorf("outbox of %s = %+v, want the undelivered aef2 revocation only", w.inv, p)
	}
}

// TestRevocationThrottled: the revocation's TransactWriteItems is throttled on every attempt.
// The SDK retries a bounded number of times, the domain answers ErrUnavailable (503), and
// neither the context nor the outbox changed.
func TestRevocationThrottled(t *testing.T) {
	rec := &dynamodbtest.Recorder{}
	var throttle atomic.Bool
	s := newStore(t, withRecorder(rec), withFault(func(_ context.Context, op string) error {
		if throttle.Load() && op == "TransactWriteItems" {
			return &types.ProvisionedThroughputExceededException{Message: aws.String("injected")}
		}
		return nil
	}))
	svc := newService(t, s, &securitytest.Notifier{}, 0)
	w := newWorld()
	importWorld(t, svc, w)
	ctx := context.Background()
	if _, err := svc.CreateSecurityContext(ctx, security.Caller{ID: w.inv, CertKey: "thumb-inv"}, w.inv, w.request("https://inv.example.com/cb")); err != nil {
		t.Fatal(err)
	}
	before := storedContext(t, s, w.inv)

	for name, revoke := range map[string]func(context.Context) error{
		"DELETE": func(ctx context.Context) error {
			return svc.RevokeAll(ctx, security.Caller{ID: w.aef1, CertKey: "thumb-aef1"}, w.inv)
		},
		"POST delete": func(ctx context.Context) error {
			return svc.Revoke(ctx, security.Caller{ID: w.aef2, CertKey: "thumb-aef2"}, w.inv, &capif.SecurityNotification{APIInvokerID: w.inv, APIIDs: []string{w.apiC}, Cause: capif.UnexpectedReason})
		},
	} {
		throttle.Store(true)
		rec.Reset()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // the Lambda deadline minus a margin
		start := time.Now()
		err := revoke(ctx)
		cancel()
		throttle.Store(false)
		if !errors.Is(err, security.ErrUnavailable) {
			t.Fatalf("%s with throttled writes = %v, want ErrUnavailable", name, err)
		}
		n := 0
		for _, op := range rec.Operations() {
			if op == "TransactWriteItems" {
				n++
			}
		}
		if n != awsretry.DynamoDB.Attempts {
			t.Errorf("%s: %d TransactWriteItems attempts, want the policy's bounded %d", name, n, awsretry.DynamoDB.Attempts)
		}
		t.Logf("%s: ErrUnavailable after %d attempts in %v: %v", name, n, time.Since(start).Round(time.Millisecond), err)
		if got := storedContext(t, s, w.inv); !equalJSON(got, before) {
			t.Errorf("%s: context changed by a failed revocation:\n got %+v\nwant %+v", name, got, before)
		}
		if p := pendingOf(t, s, w.inv); len(p) != 0 {
			t.Errorf("%s: outbox holds %+v after a failed revocation", name, p)
		}
	}
}

// TestDeadline: a DynamoDB that never answers ends in ErrUnavailable at the caller's deadline,
// and a ctx without deadline is bounded by Options.Timeout.
func TestDeadline(t *testing.T) {
	hang := func(ctx context.Context, op string) error {
		<-ctx.Done()
		return ctx.Err()
	}
	s := newStore(t, withFault(hang), func(o *Options) { o.Timeout = 300 * time.Millisecond })
	svc := newService(t, s, &securitytest.Notifier{}, 0)
	w := newWorld()

	for name, ctx := range map[string]func() (context.Context, context.CancelFunc){
		"caller deadline": func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		},
		"no deadline": func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
	} {
		c, cancel := ctx()
		start := time.Now()
		_, err := svc.GetInvokerInfo(c, security.Caller{ID: w.aef1, CertKey: "thumb-aef1"}, w.inv, security.InvokerInfoQuery{AuthenticationInfo: false, AuthorizationInfo: false})
		cancel()
		took := time.Since(start)
		if !errors.Is(err, security.ErrUnavailable) {
			t.Errorf("%s: GetInvokerInfo on a hanging DynamoDB = %v, want ErrUnavailable", name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s: took %v; the deadline did not bound it", name, took)
		}
	}
}

func equalJSON(a, b any) bool { return dump(a) == dump(b) }

// recordingStore wraps the Store to log every committed Replace, so the concurrency test can
// check the history is a serial one.
type recordingStore struct {
	*Store
	mu      sync.Mutex
	commits []commit
}

type commit struct {
	version int64 // after the write
	sc      security.SecurityContext
	owed    []security.Owed
}

func (r *recordingStore) Replace(ctx context.Context, sc *security.SecurityContext, owed []security.Owed) error {
	if err := r.Store.Replace(ctx, sc, owed); err != nil {
		return err
	}
	var c security.SecurityContext
	mustJSON(sc, &c)
	r.mu.Lock()
	r.commits = append(r.commits, commit{version: sc.Version, sc: c, owed: slices.Clone(owed)})
	r.mu.Unlock()
	return nil
}

// TestServiceConcurrency: 50 concurrent updates and revocations of one security context through
// security.Service. Every answer is a success, a 4xx the rules allow (nothing left to revoke), or
// a bounded 503; the committed writes form one chain of versions (no lost update), each write was
// computed from the state its predecessor left, and the stored context is the chain's end.
func TestServiceConcurrency(t *testing.T) {
	base := newStore(t)
	rs := &recordingStore{Store: base}
	svc := security.New(rs, base, &securitytest.Signer{}, &securitytest.Notifier{}, nil, security.Config{Issuer: "ccf-test", APIRoot: "https://ccf.example.com"})
	w := newWorld()
	importWorld(t, svc, w)
	ctx := context.Background()
	if _, err := svc.CreateSecurityContext(ctx, security.Caller{ID: w.inv, CertKey: "thumb-inv"}, w.inv, w.request("https://inv.example.com/0", capif.PSK)); err != nil {
		t.Fatal(err)
	}
	first := storedContext(t, base, w.inv)

	const workers = 50
	type outcome struct {
		kind string
		err  error
		took time.Duration
	}
	results := make([]outcome, workers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			t0 := time.Now()
			var kind string
			var err error
			switch i % 3 {
			case 0:
				kind = "update"
				_, err = svc.UpdateSecurityContext(ctx, security.Caller{ID: w.inv, CertKey: "thumb-inv"}, w.inv, w.request(fmt.Sprintf("https://inv.example.com/%d", i), capif.PSK))
			case 1:
				kind = "revoke apiA"
				err = svc.Revoke(ctx, security.Caller{ID: w.aef1, CertKey: "thumb-aef1"}, w.inv, &capif.SecurityNotification{APIInvokerID: w.inv, APIIDs: []string{w.apiA}, Cause: capif.OverlimitUsage})
			case 2:
				kind = "revoke all of aef2"
				err = svc.RevokeAll(ctx, security.Caller{ID: w.aef2, CertKey: "thumb-aef2"}, w.inv)
			}
			results[i] = outcome{kind, err, time.Since(t0)}
		})
	}
	close(start)
	wg.Wait()

	counts := map[string]int{}
	for i, r := range results {
		status := statusOf(r.err)
		counts[fmt.Sprintf("%s %d", r.kind, status)]++
		switch {
		case status < 300:
		case status == 503:
			var se *security.Error
			if errors.As(r.err, &se) && se.RetryAfter <= 0 {
				t.Errorf("worker %d: 503 without Retry-After: %v", i, r.err)
			}
		case status == 403 || status == 404:
			if r.kind == "update" {
				t.Errorf("worker %d: update answered %d: %v", i, status, r.err)
			}
		default:
			t.Errorf("worker %d (%s): status %d: %v", i, r.kind, status, r.err)
		}
		if r.took > 15*time.Second {
			t.Errorf("worker %d took %v", i, r.took)
		}
	}
	t.Logf("outcomes: %v", counts)

	// The history: versions 2..n+1 exactly once each, in a chain.
	commits := slices.Clone(rs.commits)
	slices.SortFunc(commits, func(a, b commit) int { return int(a.version - b.version) })
	prev := *first
	for i, c := range commits {
		if c.version != int64(i)+2 {
			t.Fatalf("commit %d has version %d, want %d: two writers committed on one version", i, c.version, i+2)
		}
		checkStep(t, w, &prev, &c)
		prev = c.sc
	}
	if len(commits) == 0 {
		t.Fatal("no write committed")
	}
	final := storedContext(t, base, w.inv)
	if final == nil || !equalJSON(final, &prev) {
		t.Errorf("stored context is not the end of the committed chain:\n got %s\nwant %s", dump(final), dump(&prev))
	}
}

// checkStep verifies that commit c is what its operation makes of state prev.
func checkStep(t *testing.T, w *world, prev *security.SecurityContext, c *commit) {
	t.Helper()
	targets := func(sc *security.SecurityContext) []string {
		var out []string
		for _, e := range sc.Entries {
			for _, tg := range e.Targets {
				out = append(out, tg.AefID+"/"+tg.APIID)
			}
		}
		slices.Sort(out)
		return out
	}
	before, after := targets(prev), targets(&c.sc)
	if len(c.owed) == 0 { // an update: every API again, PSKs of unchanged targets kept
		want := []string{w.aef1 + "/" + w.apiA, w.aef1 + "/" + w.apiB, w.aef2 + "/" + w.apiC}
		if !slices.Equal(after, want) {
			t.Errorf("version %d (update) has targets %v, want %v", c.version, after, want)
		}
		for _, e := range c.sc.Entries {
			for _, pe := range prev.Entries {
				if pe.AefID == e.AefID && pe.PSK != e.PSK {
					t.Errorf("version %d (update) changed the PSK of the %s entry: it was not computed from version %d", c.version, e.AefID, c.version-1)
				}
			}
		}
		return
	}
	// A revocation: exactly the notified targets disappeared from the previous state.
	n := c.owed[0].Notification
	var removed []string
	for _, api := range n.APIIDs {
		removed = append(removed, n.AefID+"/"+api)
	}
	want := slices.DeleteFunc(slices.Clone(before), func(s string) bool { return slices.Contains(removed, s) })
	if !slices.Equal(after, want) || len(before)-len(after) != len(removed) {
		t.Errorf("version %d revoked %v: targets %v → %v, not a step from version %d", c.version, removed, before, after, c.version-1)
	}
}

// statusOf maps a Service error to the HTTP status the API layer answers.
func statusOf(err error) int {
	var se *security.Error
	switch {
	case err == nil:
		return 200
	case errors.As(err, &se):
		return map[security.Kind]int{security.KindInvalid: 400, security.KindUnauthenticated: 401, security.KindForbidden: 403,
			security.KindNotFound: 404, security.KindTooLarge: 413, security.KindUnavailable: 503}[se.Kind]
	case errors.Is(err, security.ErrUnavailable):
		return 503
	}
	return 500
}
