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

func TestBadBody(t *testing.T) {
	tests := []struct {
		kind  security.Kind
		cause string
	}{
		{security.KindInvalid, security.CauseMalformedBody},
		{security.KindTooLarge, security.CauseTooLarge},
		{security.KindUnsupportedType, security.CauseUnsupportedMedia},
	}
	for _, tt := range tests {
		p := capif.InvalidParam{Param: "/x", Reason: "r"}
		e := security.BadBody(tt.kind, "detail", p)
		if e.Kind != tt.kind || e.Cause != tt.cause || e.Detail != "detail" || len(e.InvalidParams) != 1 || e.InvalidParams[0] != p {
			t.Errorf("BadBody(%d) = %+v", tt.kind, e)
		}
	}
	if u := security.Unavailable("later"); u.Kind != security.KindUnavailable || u.RetryAfter <= 0 || u.Cause != security.CauseTemporarilyUnavail {
		t.Errorf("Unavailable = %+v", u)
	}
}

func TestCreateStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.hooks.CreateErr = errors.New("disk full")
	if _, err := e.svc.CreateSecurityContext(ctx, "inv1", "inv1", standardRequest(), nil); !errors.Is(err, e.hooks.CreateErr) {
		t.Errorf("error %v, want the store's", err)
	}
}

func TestDeliveredFailureIsLogged(t *testing.T) {
	e := newEnv(t)
	e.create("inv1", standardRequest())
	e.hooks.DeliveredErr = errors.New("outbox write failed")
	if err := e.svc.RevokeAll(ctx, "aef1", "inv1"); err != nil {
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
	if _, err := svc.ObtainAuthorization(ctx, "inv1", "inv1", tokenReq("inv1", inv1Secret, ""), nil); err != nil {
		t.Fatal(err)
	}
	c := e.signer.Claims()[0]
	if c.IssuedAt == e.clock.Now().Unix() || c.Expiry <= c.IssuedAt {
		t.Errorf("claims %s: not from the system clock with a default TTL", dump(c))
	}
	if err := svc.RevokeAll(ctx, "aef1", "inv1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "revocation notification not delivered") {
		t.Errorf("the default logger got %q", logs.String())
	}
}
