package aefauth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Revocation is one push of the CCF as a deny list keeps it: the invoker's authorization for
// apiIDs revoked At (this AEF's clock when the push arrived: neither RevokeAuthorizationReq nor
// SecurityNotification carries a time), which may be forgotten after Until (when no token
// issued before At can still be valid).
type Revocation struct {
	PushID       string // the push's webhook-id; "" when it had none
	APIInvokerID string
	APIIDs       []string
	At, Until    time.Time
}

// AllAPIs is the apiId under which a DenyList keeps a revocation of all of an invoker's APIs at
// this AEF: SecurityAPI records it beside the apiIds of a push that names an apiId Config.APIs
// does not hold.
const AllAPIs = "*"

// DenyList is where an AEF keeps the revocations pushed to it, for Verify to consult.
// Implementations are safe for concurrent use. An AEF with several replicas shares one store
// behind this interface; with a list per process, only the replica that took the push learns
// of it.
type DenyList interface {
	// Record keeps r, per (APIInvokerID, apiId) the later of two times, and returns once it is
	// as durable as the list promises; on an error nothing is kept (the CCF retries). A push
	// whose PushID was recorded before changes nothing.
	Record(ctx context.Context, r Revocation) error
	// RevokedAt is the latest time the invoker's authorization for apiID was revoked, if an
	// entry is kept (it may be kept past its Until: the caller judges that).
	RevokedAt(ctx context.Context, apiInvokerID, apiID string) (time.Time, bool, error)
}

// entries is the state both lists share: per invoker and apiId the latest revocation, the push
// ids seen, each with the time it may be forgotten.
type entries struct {
	at     map[[2]string]entry
	pushes map[string]time.Time
}

type entry struct{ at, until time.Time }

func newEntries() entries {
	return entries{at: map[[2]string]entry{}, pushes: map[string]time.Time{}}
}

// seen reports whether r's push was recorded already.
func (e entries) seen(r Revocation) bool {
	_, ok := e.pushes[r.PushID]
	return r.PushID != "" && ok
}

// add keeps r (the caller checked seen) and forgets what expired before it: the time of the
// newest push is the list's clock, so a list needs none of its own.
func (e entries) add(r Revocation) {
	now := r.At
	for k, v := range e.at {
		if now.After(v.until) {
			delete(e.at, k)
		}
	}
	for id, until := range e.pushes {
		if now.After(until) {
			delete(e.pushes, id)
		}
	}
	if r.PushID != "" {
		e.pushes[r.PushID] = r.Until
	}
	for _, api := range r.APIIDs {
		k := [2]string{r.APIInvokerID, api}
		if old, ok := e.at[k]; ok && old.at.After(r.At) {
			continue
		}
		e.at[k] = entry{r.At, r.Until}
	}
}

func (e entries) lookup(apiInvokerID, apiID string) (time.Time, bool) {
	v, ok := e.at[[2]string{apiInvokerID, apiID}]
	return v.at, ok
}

// MemoryList is a DenyList in this process's memory: a restart forgets every revocation, and
// the tokens it covered are accepted again until they expire. Use FileList (or a shared store)
// unless that is acceptable.
type MemoryList struct {
	mu sync.Mutex
	e  entries
}

// NewMemoryList makes an empty MemoryList.
func NewMemoryList() *MemoryList { return &MemoryList{e: newEntries()} }

// Record keeps r.
func (l *MemoryList) Record(_ context.Context, r Revocation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.e.seen(r) {
		l.e.add(r)
	}
	return nil
}

// RevokedAt looks the entry up.
func (l *MemoryList) RevokedAt(_ context.Context, apiInvokerID, apiID string) (time.Time, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.e.lookup(apiInvokerID, apiID)
	return at, ok, nil
}

// FileList is a DenyList that survives a restart: every revocation is appended to a file as one
// JSON line and fsynced before Record returns, and the file is read back (and rewritten without
// what expired) when it is opened. One process per file: the file has no lock, and a second
// writer's lines would be lost at the first one's next open.
type FileList struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64 // of the file up to its last complete, synced line
	e    entries
}

// OpenFileList opens (creating it, mode 0600) the list kept in path.
func OpenFileList(path string) (*FileList, error) {
	l := &FileList{path: path, e: newEntries()}
	if err := l.load(); err != nil {
		return nil, err
	}
	// Rewrite what is still kept, then append to it.
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("aefauth: deny list: %w", err)
	}
	w := bufio.NewWriter(tmp)
	now := time.Now()
	for k, v := range l.e.at {
		if !now.After(v.until) {
			_ = json.NewEncoder(w).Encode(Revocation{APIInvokerID: k[0], APIIDs: []string{k[1]}, At: v.at, Until: v.until})
		}
	}
	for id, until := range l.e.pushes {
		if !now.After(until) {
			_ = json.NewEncoder(w).Encode(Revocation{PushID: id, Until: until})
		}
	}
	err = errors.Join(w.Flush(), tmp.Chmod(0o600), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return nil, fmt.Errorf("aefauth: deny list: %w", err)
	}
	// The rename is durable only once the directory is synced.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("aefauth: deny list: %w", err)
	}
	if l.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("aefauth: deny list: %w", err)
	}
	fi, err := l.f.Stat()
	if err != nil {
		_ = l.f.Close()
		return nil, fmt.Errorf("aefauth: deny list: %w", err)
	}
	l.size = fi.Size()
	return l, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// maxLine bounds a line of the file: a push body is at most maxRevokeBody, and JSON escaping
// (\u00XX) can make its strings up to six times longer.
const maxLine = 6*maxRevokeBody + 4<<10

// load replays the file. A line that does not parse (a write cut short by a crash) is skipped;
// a line longer than any Record writes, or a read error, fails the open: a deny list that
// cannot be read whole must not start empty.
func (l *FileList) load() error {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("aefauth: deny list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var r Revocation
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		if !l.e.seen(r) {
			l.e.add(r)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("aefauth: deny list: %w", err)
	}
	return nil
}

// Record appends r and fsyncs the file before it returns; on an error nothing is kept.
func (l *FileList) Record(_ context.Context, r Revocation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.e.seen(r) {
		return nil
	}
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	_, err = l.f.Write(line)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		// Cut what may have been written, so the file stays whole lines the list did keep.
		_ = l.f.Truncate(l.size)
		return fmt.Errorf("aefauth: deny list: %w", err)
	}
	l.size += int64(len(line))
	l.e.add(r)
	return nil
}

// RevokedAt looks the entry up.
func (l *FileList) RevokedAt(_ context.Context, apiInvokerID, apiID string) (time.Time, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.e.lookup(apiInvokerID, apiID)
	return at, ok, nil
}

// Close closes the file.
func (l *FileList) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
