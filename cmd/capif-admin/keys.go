package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/envelope"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

const keysOperands = "list | rotate | retire [-now] KID | import-env | add KEYID"

// defineKeys manages the key set: the token-signing keys the functions sign with and publish.
func defineKeys(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	now := fs.Bool("now", false, "retire: drop the key from the JWKS at once (its tokens fail); the signing key hands over to the newest published key in the same write")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) == 0 {
			return errors.New("keys takes a subcommand: " + keysOperands)
		}
		sub, args := s.operands[0], s.operands[1:]
		if sub == "retire" { // keys retire -now KID: the flag after the subcommand
			args = slices.DeleteFunc(slices.Clone(args), func(a string) bool {
				if a == "-now" || a == "--now" {
					*now = true
					return true
				}
				return false
			})
		}
		arity := map[string]int{"list": 0, "rotate": 0, "retire": 1, "import-env": 0, "add": 1}
		n, ok := arity[sub]
		if !ok || len(args) != n {
			return fmt.Errorf("keys %s: want keys %s", sub, keysOperands)
		}
		if *now && sub != "retire" {
			return errors.New("keys: -now goes with retire only")
		}
		if s.dryRun && sub != "list" {
			fmt.Fprintf(s.stdout, "dry run: would keys %s; nothing written\n", sub)
			return nil
		}
		m, err := s.keyManager(ctx, sub)
		if err != nil {
			return err
		}
		switch sub {
		case "rotate":
			rec, err := m.Rotate(ctx)
			if err != nil {
				return fmt.Errorf("keys rotate: %w", err)
			}
			printPublished(s, rec)
		case "retire":
			if _, err := m.Retire(ctx, args[0], *now); err != nil {
				return fmt.Errorf("keys retire: %w", err)
			}
		case "add":
			awsCfg, err := s.aws.Get()
			if err != nil {
				return err
			}
			client := kms.NewClient(awsCfg)
			rec, err := kms.Record(ctx, client, args[0])
			if err == nil {
				err = kms.CheckTagged(ctx, client, rec.KMSKeyID, s.cfg.Stack)
			}
			if err != nil {
				return fmt.Errorf("keys add: %w", err)
			}
			rec, added, err := m.Add(ctx, rec)
			switch {
			case err != nil:
				return fmt.Errorf("keys add: %w", err)
			case added:
				printPublished(s, rec)
			default:
				fmt.Fprintf(s.stdout, "%s is in the key set already (a record stays until it is pruned: to switch to this key's algorithm, make a new key)\n", rec.Kid)
			}
		case "import-env":
			if m.Legacy == nil {
				return errors.New("keys import-env: no keys in CAPIF_KMS_KEY_IDS (-kms-key-ids)")
			}
			recs, err := m.Legacy(ctx)
			if err != nil {
				return fmt.Errorf("keys import-env: %w", err)
			}
			made, err := m.Import(ctx, recs)
			if err != nil {
				return fmt.Errorf("keys import-env: %w", err)
			}
			if !made {
				return errors.New("keys import-env: the key set has keys already; nothing imported (keys add records one more)")
			}
		}
		return listKeys(ctx, s, m)
	}
}

// keyManager opens the store and the key set's manager: new keys are wrapped under
// -kms-wrapping-key, or on the embedded store without it under the data directory's key file
// (the runner's -signer local: fullapp.KeyManager), bound to the stack settings.Load names
// ("local" on the embedded store; on DynamoDB the stack of -stack or -table-prefix). Tables
// named one by one name no stack: rotate and add, which bind a key to one, refuse them, since a
// key wrapped or tagged for the wrong stack would never sign.
func (s *session) keyManager(ctx context.Context, sub string) (envelope.Manager, error) {
	cfg := app.Config{Settings: s.cfg, Logger: s.logger, AWS: s.aws.Get, AEFPush: security.AEFPushQueued}
	if cfg.Settings.Stack == "" {
		if sub == "rotate" || sub == "add" {
			return envelope.Manager{}, errors.New("keys " + sub + ": name the deployment with -stack NAME (or -table-prefix NAME-): its keys are bound to it")
		}
		cfg.Settings.KMSWrappingKey = "" // list, retire and import-env make no key
	}
	if s.app == nil {
		a, err := fullapp.Open(ctx, cfg)
		if err != nil {
			return envelope.Manager{}, err
		}
		s.app = a
	}
	return fullapp.KeyManager(ctx, cfg, s.app)
}

func printPublished(s *session, rec security.SigningKey) {
	fmt.Fprintf(s.stdout, "published %s (%s); it signs from %s\n", rec.Kid, rec.Alg, rec.ActivateAt.UTC().Format(time.RFC3339))
}

// listKeys prints the set: each key's kid, algorithm, kind, state and times.
func listKeys(ctx context.Context, s *session, m envelope.Manager) error {
	set, err := m.Load(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tKIND\tSTATE\tPUBLISHED\tSIGNS FROM\tLEAVES JWKS")
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, k := range set.Keys {
		kind := "wrapped"
		if k.KMSKeyID != "" {
			kind = "kms"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Kid, k.Alg, kind, set.State(k, now, m.Windows),
			at(k.PublishedAt), at(k.ActivateAt), at(set.LeavesAt(k, now, m.Windows)))
	}
	switch {
	case len(set.Keys) > 0:
	case s.cfg.Store == settings.StoreEmbedded:
		fmt.Fprintln(tw, "(none: the runner publishes a first key at its start)")
	default:
		fmt.Fprintln(tw, "(none: the functions sign with CAPIF_KMS_KEY_IDS; keys import-env records them)")
	}
	return tw.Flush()
}
