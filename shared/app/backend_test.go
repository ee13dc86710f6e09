package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/settings"
)

// A setting naming a back end the process does not link fails Open with what it links.
func TestOpenRefusesBackendsNotLinked(t *testing.T) {
	opened := 0
	store := app.Backend{Name: settings.StoreDynamoDB, Store: func(context.Context, app.Input) (app.StoreAdapter, error) {
		opened++
		return app.StoreAdapter{}, nil
	}}
	for _, tc := range []struct {
		name string
		set  settings.Config
		want string
	}{
		{"store", settings.Config{Store: settings.StoreEmbedded, Signer: settings.SignerNone}, `store "embedded" is not available in this process (want one of dynamodb)`},
		{"default store", settings.Config{Signer: settings.SignerNone}, `store "" is not available`},
		{"signer", settings.Config{Store: settings.StoreDynamoDB, Signer: settings.SignerKMS}, `signer "kms" is not available in this process (want one of none)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := app.Open(context.Background(), app.Config{Settings: tc.set, Backends: []app.Backend{store}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want %q", err, tc.want)
			}
		})
	}
	a, err := app.Open(context.Background(), app.Config{Settings: settings.Config{Store: settings.StoreDynamoDB, Signer: settings.SignerNone}, Backends: []app.Backend{store}})
	if err != nil || opened != 2 {
		t.Fatalf("%v (opened %d)", err, opened)
	}
	if _, err := a.Service.JWKS(context.Background()); err == nil {
		t.Error("the signer none signed")
	}
}
