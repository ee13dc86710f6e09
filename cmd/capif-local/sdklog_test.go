package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capifcore/capif-security/internal/testenv"
)

func TestQuietLocalChecksum(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(quietLocalChecksum{slog.NewJSONHandler(&buf, nil)})
	noise := "failed to close HTTP response body, this may affect connection reuse: response did not match expected checksum, 0, 2080965641"
	l.Warn(noise, slog.String("source", "aws-sdk"))
	l.With("k", "v").Warn(noise, slog.String("source", "aws-sdk"))
	kept := []string{
		"failed to close HTTP response body, this may affect connection reuse: response did not match expected checksum, 17, 2080965641",
		"failed to close HTTP response body, this may affect connection reuse: EOF",
		"failed to parse response Date header value",
	}
	for _, m := range kept {
		l.Warn(m, slog.String("source", "aws-sdk"))
	}
	l.Warn(noise) // not the SDK's
	out := buf.String()
	if n := strings.Count(out, "\n"); n != len(kept)+1 {
		t.Errorf("%d lines kept, want %d:\n%s", n, len(kept)+1, out)
	}
	for _, m := range kept {
		if !strings.Contains(out, m) {
			t.Errorf("dropped %q", m)
		}
	}
}

func TestLocalDynamoDB(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "")
	for ep, want := range map[string]bool{
		"http://127.0.0.1:8000": true, "http://localhost:8000": true, "http://[::1]:8000": true,
		"https://dynamodb.eu-west-1.amazonaws.com": false, "http://10.0.0.5:8000": false, "": false,
	} {
		t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", ep)
		if got := localDynamoDB(os.Getenv); got != want {
			t.Errorf("%q: local %v, want %v", ep, got, want)
		}
	}
}

// On DynamoDB Local, the runner's start (tables not found yet, then created) logs no checksum
// WARN line.
func TestRunnerOnDynamoDBLocalHasNoChecksumNoise(t *testing.T) {
	testenv.DynamoDBEndpoint(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	logs := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	listening := make(chan struct{})
	stdout := writerFunc(func(p []byte) {
		if strings.Contains(string(p), "listening on") {
			close(listening)
		}
	})
	go func() {
		done <- mainErr(ctx, []string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-store", "dynamodb", "-signer", "local", "-create-tables",
			"-table-prefix", "quiet-" + hex.EncodeToString(b[:]) + "-", "-registry", filepath.Join("..", "..", "examples", "registry.json")}, stdout, logs)
	}()
	select {
	case <-listening:
	case err := <-done:
		t.Fatalf("mainErr: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("not listening:\n%s", logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="dynamodb table created"`) {
		t.Fatalf("no table was created, so no error answer was seen:\n%s", out)
	}
	if strings.Contains(out, "expected checksum") {
		t.Errorf("checksum WARN lines in the log:\n%s", out)
	}
}
