package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/notify"
)

// TestKillBetweenCommitAndDelivery: revocations committed while their inline deliveries hang
// are owed after a SIGKILL; the restarted runner delivers every one of them (counted by id).
func TestKillBetweenCommitAndDelivery(t *testing.T) {
	dir := t.TempDir()
	regPath := filepath.Join(dir, "registry.json")
	raw, _ := json.Marshal(testRegistry())
	if err := os.WriteFile(regPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// The listener hangs every request until hanging is closed, then accepts and counts.
	hanging := make(chan struct{})
	var mu sync.Mutex
	arrived, delivered := 0, map[string]int{}
	generation := 0 // 0 while the first runner lives: its attempts never count as delivered
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		gen := generation
		mu.Unlock()
		if gen == 0 {
			select {
			case <-hanging:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		delivered[r.Header.Get(notify.HeaderID)]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	data := filepath.Join(dir, "data")
	flags := []string{"-registry", regPath, "-claim-lease", "3s", "-delivery-interval", "200ms", "-retry-base", "100ms", "-retry-cap", "200ms"}
	flags = append([]string{"-addr", "127.0.0.1:0", "-data", data}, flags...)
	cmd, url1, _ := startServer(t, flags...)
	ca, err := devpki.LoadOrCreateCA(data)
	if err != nil {
		t.Fatal(err)
	}
	client := func(id string) *http.Client {
		issued, err := ca.Client(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{issued.TLS}}}}
	}
	const n = 5
	invs := make([]string, n)
	for i := range invs {
		invs[i] = fmt.Sprintf("inv-%03d", i)
		body, _ := json.Marshal(serviceSecurity(srv.URL+"/cb", aefEntry(aefA, apiA1, "OAUTH")))
		req, _ := http.NewRequest(http.MethodPut, url1+invPath(invs[i]), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client(invs[i]).Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %v %v", invs[i], resp, err)
		}
		resp.Body.Close()
	}
	aef := client(aefA)
	for _, inv := range invs {
		go func() {
			req, _ := http.NewRequest(http.MethodDelete, url1+invPath(inv), nil)
			if resp, err := aef.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	// Every revocation has committed once its inline attempt reached the listener.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		a := arrived
		mu.Unlock()
		if a >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d inline attempts arrived", a)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	mu.Lock()
	generation = 1
	mu.Unlock()
	close(hanging)

	restarted := time.Now()
	startServer(t, flags...)
	t.Logf("restarted")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got := len(delivered)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d owed notifications delivered after the restart", got, n)
		}
	}
	t.Logf("all delivered %s after the restart", time.Since(restarted))
	mu.Lock()
	defer mu.Unlock()
	// Repeats of an id are allowed (at least once): receivers de-duplicate on it.
	for id := range delivered {
		if id == "" {
			t.Error("a delivery without webhook-id")
		}
	}
}
