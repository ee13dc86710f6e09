package dynamodb

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

// benchContext is a context of n entries, each with two targets, a PSK and both infos: the
// shape a real invoker's context has.
func benchContext(id string, n int) *security.SecurityContext {
	sc := &security.SecurityContext{APIInvokerID: id, NotificationDestination: "https://invoker.example.com/capif/notifications", SupportedFeatures: "4"}
	for i := range n {
		sc.Entries = append(sc.Entries, security.Entry{AefID: fmt.Sprintf("aef-%02d", i), PrefSecurityMethods: []capif.SecurityMethod{capif.PSK, capif.OAUTH},
			SelSecurityMethod: capif.PSK, PSK: "m6N2Yk9n1cT1q8x0V3oZpQeS7wHfL4uA2bJrD5gKiE0",
			Targets: []security.Target{{AefID: fmt.Sprintf("aef-%02d", i), APIID: fmt.Sprintf("api-%02d-a", i), APIName: "location"},
				{AefID: fmt.Sprintf("aef-%02d", i), APIID: fmt.Sprintf("api-%02d-b", i), APIName: "qos"}}})
	}
	return sc
}

// BenchmarkCodec is the client-side CPU of storing and reading a context, without the network
// (what a 128 MB Lambda pays per request on top of DynamoDB's latency). docs/dynamodb.md keeps
// its comparison with the DynamoDB map encoding that was removed.
func BenchmarkCodec(b *testing.B) {
	for _, entries := range []int{2, 20} {
		sc := benchContext("inv", entries)
		item, err := contextItemOf(sc, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dentries/encode", entries), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := contextItemOf(sc, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%dentries/decode", entries), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeContext(item); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// wireBytes counts the HTTP request and response body bytes a client exchanges.
func wireBytes(sent, received *atomic.Int64) func(*Options) {
	return withClientOption(func(o *ddb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Deserialize.Add(middleware.DeserializeMiddlewareFunc("testWire",
				func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
					if r, ok := in.Request.(*smithyhttp.Request); ok && r.ContentLength > 0 {
						sent.Add(r.ContentLength)
					}
					out, md, err := next.HandleDeserialize(ctx, in)
					// Innermost in this step: the SDK's deserializer reads the body after us, through
					// the counter (Content-Length is absent on chunked answers).
					if r, ok := out.RawResponse.(*smithyhttp.Response); ok && r.Body != nil {
						r.Body = countingBody{r.Body, received}
					}
					return out, md, err
				}), middleware.After)
		})
	})
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkWire measures Load and Replace of a 2- and a 20-entry context against DynamoDB Local
// and reports the bytes on the wire per operation.
func BenchmarkWire(b *testing.B) {
	ctx := context.Background()
	for _, entries := range []int{2, 20} {
		var sent, received atomic.Int64
		s := newStore(b, wireBytes(&sent, &received))
		sc := benchContext("bench-"+randomHex(4), entries)
		if err := s.Create(ctx, sc); err != nil {
			b.Fatal(err)
		}
		report := func(b *testing.B) {
			b.ReportMetric(float64(sent.Load())/float64(b.N), "sentB/op")
			b.ReportMetric(float64(received.Load())/float64(b.N), "recvB/op")
		}
		b.Run(fmt.Sprintf("%dentries/Load", entries), func(b *testing.B) {
			sent.Store(0)
			received.Store(0)
			for b.Loop() {
				if snap, err := s.Load(ctx, security.Query{CallerID: "nobody", APIInvokerID: sc.APIInvokerID}); err != nil || snap.Context == nil {
					b.Fatal(snap, err)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("%dentries/Replace", entries), func(b *testing.B) {
			sent.Store(0)
			received.Store(0)
			for i := 0; b.Loop(); i++ {
				sc.Entries[0].PSK = fmt.Sprint(i) // a real change each time
				if err := s.Replace(ctx, sc, nil); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}
