package security

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
)

func TestFailureLevel(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("POST to destination failed: %w", err) }
	tests := []struct {
		name string
		err  error
		dead bool
		want slog.Level
	}{
		{"our request or certificate refused, retried", wrap(ErrNotAccepted), false, slog.LevelError},
		{"our request or certificate refused, dead", wrap(ErrNotAccepted), true, slog.LevelError},
		{"nothing listens, retried", wrap(ErrNoListener), false, slog.LevelDebug},
		{"nothing listens, dead", wrap(ErrNoListener), true, slog.LevelWarn},
		{"refused by the guard or gone", wrap(ErrUndeliverable), true, slog.LevelWarn},
		{"5xx or timeout, retried", errors.New("destination answered 503"), false, slog.LevelWarn},
		{"silent until the window ended", errors.New("no answer"), true, slog.LevelWarn},
	}
	for _, tt := range tests {
		if got := failureLevel(tt.err, tt.dead); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
