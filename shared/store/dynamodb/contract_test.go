package dynamodb

import (
	"testing"

	"github.com/capifcore/capif-security/shared/store/storetest"
)

// TestContract runs the back-end-agnostic suite in both record encodings.
func TestContract(t *testing.T) {
	for _, enc := range []struct {
		name string
		enc  Encoding
	}{{"json", EncodingJSON}, {"document", EncodingDocument}} {
		t.Run(enc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Backend {
				s := newStore(t, func(o *Options) { o.Encoding = enc.enc })
				return storetest.Backend{Store: s, Registry: s, Pending: s.Pending}
			})
		})
	}
}

// BenchmarkStore measures Load and Replace against DynamoDB Local in both encodings:
//
//	scripts/with-peers.sh go test -run '^$' -bench . -benchtime 2s ./shared/store/dynamodb/
func BenchmarkStore(b *testing.B) {
	for _, enc := range []struct {
		name string
		enc  Encoding
	}{{"json", EncodingJSON}, {"document", EncodingDocument}} {
		b.Run(enc.name, func(b *testing.B) {
			storetest.Benchmark(b, func(b *testing.B) storetest.Backend {
				s := newStore(b, func(o *Options) { o.Encoding = enc.enc })
				return storetest.Backend{Store: s, Registry: s, Pending: s.Pending}
			})
		})
	}
}
