// Command capif-admin manages the registry (API invokers, AEFs, published service APIs) of a
// CAPIF core, in DynamoDB or in the local runner's embedded store, with the same JSON the local
// runner imports.
//
//	capif-admin [flags] import -f registry.json
//	capif-admin [flags] remove-invoker ID     (its security context goes too)
//	capif-admin [flags] remove-aef ID         (refused while it still publishes APIs)
//	capif-admin [flags] remove-api ID         (revoked from every context, with notifications)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mainErr(ctx, os.Args[1:], settings.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "capif-admin:", err)
		os.Exit(1)
	}
}

func mainErr(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := settings.Load(settings.Admin, args, getenv, settings.Options{Name: "capif-admin", Output: stderr,
		Usage: "usage: capif-admin [flags] import -f FILE | remove-invoker ID | remove-aef ID | remove-api ID"})
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New("no command (import, remove-invoker, remove-aef or remove-api)")
	}
	cfg.Signer = settings.SignerNone // no token is ever issued here
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	cfg.LogWarnings(logger)
	a, err := app.Open(ctx, app.Config{Settings: cfg, Logger: logger})
	if err != nil {
		return err
	}
	defer a.Close()
	svc := a.Service
	cmd, operands := rest[0], rest[1:]
	switch cmd {
	case "import":
		ifs := flag.NewFlagSet("import", flag.ContinueOnError)
		ifs.SetOutput(stderr)
		file := ifs.String("f", "", "registry JSON file (- for standard input)")
		if err := ifs.Parse(operands); err != nil {
			return err
		}
		if *file == "" {
			return errors.New("import: -f FILE is required")
		}
		doc, err := app.ReadRegistry(*file)
		if err != nil {
			return err
		}
		if err := svc.ImportRegistry(ctx, doc); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d API invokers, %d AEFs, %d service APIs\n", len(doc.APIInvokers), len(doc.AEFs), len(doc.ServiceAPIs))
		return nil
	case "remove-invoker", "remove-aef", "remove-api":
		if len(operands) != 1 || operands[0] == "" {
			return fmt.Errorf("%s takes exactly one id", cmd)
		}
		id := operands[0]
		switch cmd {
		case "remove-invoker":
			err = svc.RemoveInvoker(ctx, id)
		case "remove-aef":
			err = svc.RemoveAEF(ctx, id)
		case "remove-api":
			var n int
			n, err = svc.RemoveAPI(ctx, id)
			if err == nil {
				fmt.Fprintf(stdout, "revoked %s from %d security contexts\n", id, n)
			}
		}
		if errors.Is(err, security.ErrNotFound) {
			return fmt.Errorf("%s %q: %w", cmd, id, err)
		}
		if err == nil {
			fmt.Fprintf(stdout, "%s %s: done\n", cmd, id)
		}
		return err
	}
	return fmt.Errorf("unknown command %q (import, remove-invoker, remove-aef or remove-api)", cmd)
}
