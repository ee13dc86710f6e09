package dynamodb

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/capifcore/capif-security/shared/security"
)

// Attribute names shared by the item shapes.
const (
	attrDoc     = "doc"     // the domain record as a JSON string (why not a map: docs/dynamodb.md)
	attrVersion = "version" // optimistic-lock counter, bumped by every write
	attrRole    = "role"    // principals: the role, so "one id, one role" is a condition on one key
	attrAPIIDs  = "apiIds"  // contexts: string set of every target apiId, for ContextsWithAPI
	attrWriteID = "writeId" // contexts: identifies the write that stored the item
	attrAefIDs  = "aefIds"  // contexts: string set of the AEFs of its targets, for Query.ForAEF
)

// Registry key prefixes: one partition key space for every registry record kind.
const (
	kindPrincipal = "P#" // invokers and AEFs: one id space, so one key per id
	kindAEF       = "A#" // AEF catalogue (absent when the AEF publishes nothing)
	kindAPI       = "S#" // published service API description, as imported
	kindInterface = "I#" // interface index entry, by security.InterfaceKey
	kindRevoked   = "R#" // revoked client certificate, by capif.CertificateKey
)

// attrExpiresAt is the registry table's TTL attribute (unix seconds): DynamoDB deletes a revoked
// certificate's item some time after it (template.yaml's TimeToLiveSpecification names
// RegistryTTLAttribute). Until then the service itself ignores an expired one.
const (
	attrExpiresAt        = "expiresAt"
	RegistryTTLAttribute = attrExpiresAt
)

// DynamoDB refuses partition keys longer than 2048 bytes. Interface keys embed the apiPrefix,
// which nothing bounds, so long registry keys are replaced by a digest (the record keeps the
// original). Contexts are keyed by the raw id: a longer id cannot have a context.
const (
	maxKeyBytes    = 2048
	hashAboveBytes = 1024
)

func registryKey(kind, id string) string {
	k := kind + id
	if len(k) > hashAboveBytes {
		sum := sha256.Sum256([]byte(id))
		return kind + "sha256:" + hex.EncodeToString(sum[:])
	}
	return k
}

// keyOK reports whether id can be a partition key (contexts and outbox are keyed by the raw id).
func keyOK(id string) bool { return id != "" && len(id) <= maxKeyBytes }

// encodeDoc stores a domain record as a JSON string attribute: smaller requests and less CPU
// than a DynamoDB map (measured, see docs/dynamodb.md), byte-comparable, and the embedded store's
// encoding too.
func encodeDoc(v any) (types.AttributeValue, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &types.AttributeValueMemberS{Value: string(b)}, nil
}

func decodeDoc(av types.AttributeValue, v any) error {
	switch av := av.(type) {
	case *types.AttributeValueMemberS:
		return json.Unmarshal([]byte(av.Value), v)
	case nil:
		return fmt.Errorf("item has no %s attribute", attrDoc)
	default:
		return fmt.Errorf("attribute %s has unexpected type %T", attrDoc, av)
	}
}

// sameWrite reports whether two context items come from the same write (version and write id).
func sameWrite(a, b map[string]types.AttributeValue) bool {
	va, ok1 := a[attrVersion].(*types.AttributeValueMemberN)
	vb, ok2 := b[attrVersion].(*types.AttributeValueMemberN)
	wa, ok3 := a[attrWriteID].(*types.AttributeValueMemberS)
	wb, ok4 := b[attrWriteID].(*types.AttributeValueMemberS)
	return ok1 && ok2 && ok3 && ok4 && va.Value == vb.Value && wa.Value == wb.Value
}

// sameDoc reports whether two doc attributes hold the same record.
func sameDoc(a, b types.AttributeValue) bool {
	sa, ok1 := a.(*types.AttributeValueMemberS)
	sb, ok2 := b.(*types.AttributeValueMemberS)
	return ok1 && ok2 && sa.Value == sb.Value
}

// docSize estimates the stored size of an attribute value (for transaction size limits).
func docSize(av types.AttributeValue) int {
	switch av := av.(type) {
	case *types.AttributeValueMemberS:
		return len(av.Value)
	case *types.AttributeValueMemberN:
		return len(av.Value)
	case *types.AttributeValueMemberB:
		return len(av.Value)
	case *types.AttributeValueMemberSS:
		n := 0
		for _, v := range av.Value {
			n += len(v)
		}
		return n
	}
	return 8
}

// --- item shapes ------------------------------------------------------------------------------

// contextItem is a row of the contexts table (plus attrDoc: the security.SecurityContext).
type contextItem struct {
	APIInvokerID string   `dynamodbav:"apiInvokerId"`
	Version      int64    `dynamodbav:"version"`
	APIIDs       []string `dynamodbav:"apiIds,stringset,omitempty"`
	AefIDs       []string `dynamodbav:"aefIds,stringset,omitempty"`
	UpdatedAt    int64    `dynamodbav:"updatedAt"` // unix seconds, for operators
	// WriteID is random per Create/Replace call (kept across the SDK's retries of it), so a
	// failed condition can tell our own earlier attempt that committed from another writer.
	WriteID string `dynamodbav:"writeId"`
}

// registryItem is a row of the registry table (plus attrDoc: the record of its kind).
type registryItem struct {
	PK      string `dynamodbav:"pk"`
	Kind    string `dynamodbav:"kind"`
	Version int64  `dynamodbav:"version"`
	Role    string `dynamodbav:"role,omitempty"`
}

// outboxItem is a row of the outbox table, plus attrDoc: the security.Owed without the
// delivery state, which the attributes hold (owedDoc). Three shapes are read alike:
//   - the oldest items: no state attributes, a doc without state (due at once);
//   - items of the release before this one: the state in the attributes and, stale once a
//     claim changed claimedUntil, in the doc too (the attributes win);
//   - items written now: the state in the attributes only.
//
// That release reads the items written now as they are meant (its decoder also takes the state
// from the attributes), so the two can run side by side.
type outboxItem struct {
	ID           string `dynamodbav:"id"`
	APIInvokerID string `dynamodbav:"apiInvokerId"`
	CreatedAt    int64  `dynamodbav:"createdAt"` // unix seconds, for operators
	// The delivery state, which conditions test: unix ms. Items written before these existed
	// lack them and are due at once.
	Attempts     int   `dynamodbav:"attempts"`
	NextAttempt  int64 `dynamodbav:"nextAttempt"`
	ClaimedUntil int64 `dynamodbav:"claimedUntil,omitempty"`
	Dead         bool  `dynamodbav:"dead"`
}

// interfaceDoc is the record of an interface index entry; it keeps the key, which the partition
// key may only hold as a digest.
type interfaceDoc struct {
	Key  string                  `json:"key"`
	APIs []security.PublishedAPI `json:"apis"`
}

func contextItemOf(sc *security.SecurityContext, now int64) (map[string]types.AttributeValue, error) {
	return contextItemWith(sc, now, rand.Text())
}

func contextItemWith(sc *security.SecurityContext, now int64, writeID string) (map[string]types.AttributeValue, error) {
	var ids []string
	for _, en := range sc.Entries {
		for _, t := range en.Targets {
			if t.APIID != "" && !slices.Contains(ids, t.APIID) {
				ids = append(ids, t.APIID)
			}
		}
	}
	slices.Sort(ids)
	return withDoc(contextItem{APIInvokerID: sc.APIInvokerID, Version: sc.Version, APIIDs: ids, AefIDs: sc.AefIDs(), UpdatedAt: now, WriteID: writeID}, sc)
}

func withDoc(shape any, doc any) (map[string]types.AttributeValue, error) {
	it, err := attributevalue.MarshalMap(shape)
	if err != nil {
		return nil, err
	}
	if it[attrDoc], err = encodeDoc(doc); err != nil {
		return nil, err
	}
	return it, nil
}

// excludes reports whether the item's aefIds attribute alone rules it out for an AEF (items
// written before the attribute existed are decoded, and the domain decides).
func excludes(item map[string]types.AttributeValue, aefID string) bool {
	set, ok := item[attrAefIDs].(*types.AttributeValueMemberSS)
	return aefID != "" && ok && !slices.Contains(set.Value, aefID)
}

func decodeContext(item map[string]types.AttributeValue) (*security.SecurityContext, error) {
	var row contextItem
	if err := attributevalue.UnmarshalMap(item, &row); err != nil {
		return nil, err
	}
	var sc security.SecurityContext
	if err := decodeDoc(item[attrDoc], &sc); err != nil {
		return nil, fmt.Errorf("context %q: %w", row.APIInvokerID, err)
	}
	sc.Version = row.Version // the attribute is authoritative: conditions test it
	return &sc, nil
}

// decodeOwed reads an outbox item: the record from the doc, the delivery state from the
// attributes (a doc of the previous release also holds a copy, which is ignored).
func decodeOwed(item map[string]types.AttributeValue) (security.Owed, error) {
	var o security.Owed
	if err := decodeDoc(item[attrDoc], &o); err != nil {
		return security.Owed{}, fmt.Errorf("outbox item: %w", err)
	}
	var row outboxItem
	if err := attributevalue.UnmarshalMap(item, &row); err != nil {
		return security.Owed{}, fmt.Errorf("outbox item %q: %w", o.ID, err)
	}
	o.Attempts, o.Dead = row.Attempts, row.Dead
	o.NextAttempt, o.ClaimedUntil = fromMillis(row.NextAttempt), fromMillis(row.ClaimedUntil)
	return o, nil
}

func outboxItemOf(o security.Owed, now int64) (map[string]types.AttributeValue, error) {
	return withDoc(outboxItem{ID: o.ID, APIInvokerID: o.APIInvokerID, CreatedAt: now, Attempts: o.Attempts,
		NextAttempt: millis(o.NextAttempt), ClaimedUntil: millis(o.ClaimedUntil), Dead: o.Dead}, owedDoc(o))
}

// owedDoc is the doc of an outbox item: o without the delivery state the attributes hold.
func owedDoc(o security.Owed) security.Owed {
	o.Attempts, o.NextAttempt, o.ClaimedUntil, o.Dead = 0, time.Time{}, time.Time{}, false
	return o
}

// millis is t in unix milliseconds, 0 for the zero time (due at once, not claimed).
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
