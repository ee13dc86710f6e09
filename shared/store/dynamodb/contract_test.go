package dynamodb

import (
	"crypto/rand"
	"testing"

	"github.com/capifcore/capif-security/shared/store/storetest"
)

// TestContract runs the back-end-agnostic suite. The tables are shared; the key set, one item
// per table, is put under a key of each subtest's own.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		s := newStore(t)
		keys := newStore(t)
		keys.keySetPK = keySetPK + "-test-" + rand.Text()
		return storetest.Backend{Store: s, Registry: s, Pending: s.Pending, KeySet: keys}
	})
}

// BenchmarkStore measures Load and Replace against DynamoDB Local:
//
//	scripts/with-peers.sh go test -run '^$' -bench . -benchtime 2s ./shared/store/dynamodb/
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) storetest.Backend {
		s := newStore(b)
		return storetest.Backend{Store: s, Registry: s, Pending: s.Pending}
	})
}
