package security_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/security"
)

func TestErrorText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *security.Error
		want string
	}{
		{&security.Error{Kind: security.KindForbidden, Cause: "NOT_OWNER", Detail: "d"}, "NOT_OWNER: d"},
		{&security.Error{Kind: security.KindInvalid, OAuthError: capif.InvalidScope, Detail: "d"}, "invalid_scope: d"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestUnavailableAndUnauthenticated(t *testing.T) {
	t.Parallel()
	if e := security.Unauthenticated(security.ObtainAuthorization, "x"); e.Kind != security.KindUnauthenticated || e.OAuthError != capif.InvalidClient {
		t.Errorf("Unauthenticated(token) = %+v, want an OAuth invalid_client", e)
	}
	if e := security.Unauthenticated(security.ObtainSecurityMethod, "x"); e.Kind != security.KindUnauthenticated || e.OAuthError != "" || e.Cause != security.CauseUnauthenticated {
		t.Errorf("Unauthenticated(PUT) = %+v, want a ProblemDetails", e)
	}
	if u := security.Unavailable("later"); u.Kind != security.KindUnavailable || u.RetryAfter <= 0 || u.Cause != security.CauseTemporarilyUnavail {
		t.Errorf("Unavailable = %+v", u)
	}
}

func TestCreateStoreFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hooks.CreateErr = errors.New("disk full")
	if _, err := e.svc.CreateSecurityContext(ctx, security.Caller{ID: "inv1"}, "inv1", standardRequest()); !errors.Is(err, e.hooks.CreateErr) {
		t.Errorf("error %v, want the store's", err)
	}
}

func TestDeliveredFailureIsLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.hooks.DeliveredErr = errors.New("outbox write failed")
	if err := e.svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	if len(e.notifier.Sent()) != 1 {
		t.Fatal("not notified")
	}
	if logs := e.logs.String(); !strings.Contains(logs, "outbox record not cleared") || !strings.Contains(logs, "outbox write failed") {
		t.Errorf("not logged: %s", logs)
	}
	if len(e.pending()) != 1 {
		t.Error("the record should stay when it could not be cleared")
	}
}

// New fills in a clock, a logger and the limits when they are not given.
func TestNewDefaults(t *testing.T) {
	e := newEnv(t)
	e.create("inv1", standardRequest())
	prev := slog.Default()
	defer slog.SetDefault(prev)
	var logs strings.Builder
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	e.notifier.Err = errors.New("unreachable")
	svc := security.New(e.db, e.db, e.signer, e.notifier, nil, security.Config{})
	if _, err := svc.ObtainAuthorization(ctx, security.Caller{ID: "inv1"}, "inv1", tokenReq("inv1", inv1Secret, "")); err != nil {
		t.Fatal(err)
	}
	c := e.signer.Claims()[0]
	if c.IssuedAt == e.clock.Now().Unix() || c.Expiry <= c.IssuedAt {
		t.Errorf("claims %s: not from the system clock with a default TTL", dump(c))
	}
	if err := svc.RevokeAll(ctx, security.Caller{ID: "aef1"}, "inv1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "notification not delivered; will retry") {
		t.Errorf("the default logger got %q", logs.String())
	}
}
