// Package dynamoapp is the DynamoDB store as an app.Backend, so a process links it by naming it.
package dynamoapp

import (
	"context"
	"fmt"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/settings"
	ddbstore "github.com/capifcore/capif-security/shared/store/dynamodb"
)

// Backend is the DynamoDB store (settings.StoreDynamoDB). It makes no network call unless the
// CreateTables setting asks for the tables to be created.
var Backend = app.Backend{Name: settings.StoreDynamoDB, Store: open}

func open(ctx context.Context, in app.Input) (app.StoreAdapter, error) {
	awsCfg, err := in.AWS()
	if err != nil {
		return app.StoreAdapter{}, err
	}
	st, err := ddbstore.New(awsCfg, ddbstore.Options{Tables: ddbstore.Tables(in.Settings.Tables), Logger: in.Logger})
	if err != nil {
		return app.StoreAdapter{}, err
	}
	if in.Settings.CreateTables {
		if err := st.CreateTables(ctx); err != nil {
			return app.StoreAdapter{}, fmt.Errorf("creating DynamoDB tables: %w", err)
		}
	}
	return app.StoreAdapter{Store: st, Registry: st, KeySet: st}, nil
}
