// Command capif-admin manages the registry (API invokers, AEFs, published service APIs) of a
// CAPIF core, in DynamoDB or in the local runner's embedded store, with the same JSON the local
// runner imports.
//
//	capif-admin -store embedded -data DIR COMMAND ...   the local runner's store (runner stopped)
//	capif-admin -stack NAME COMMAND ...                  the DynamoDB tables of a deployed stack
//	capif-admin help [COMMAND]                           the commands, or one command's flags
//
// It never touches a store it was not told to: there is no default back end. The commands that
// write print what they will touch (data directory, or region, endpoint override, tables and
// account) before they do, and take -dry-run. Commands are entries of the commands table.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/fullapp"
	"github.com/capifcore/capif-security/shared/app/sdkconfig"
	"github.com/capifcore/capif-security/shared/app/sdkconfig/standard"
	"github.com/capifcore/capif-security/shared/capif"
	"github.com/capifcore/capif-security/shared/devpki"
	"github.com/capifcore/capif-security/shared/registrydoc"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
	"github.com/capifcore/capif-security/shared/signer/kms"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mainErr(ctx, os.Args[1:], settings.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "capif-admin:", err)
		os.Exit(1)
	}
}

// command is one subcommand. Adding one is adding one entry to commands.
type command struct {
	name     string
	operands string // after the name in usage, e.g. "ID"
	summary  string
	// store: needs an explicit back end. writes: prints what it will touch first, takes -dry-run.
	store, writes bool
	// define declares the command's own flags (beside the back-end ones) and returns what runs
	// once they are parsed.
	define func(fs *flag.FlagSet) func(ctx context.Context, s *session) error
}

// session is what a command runs with.
type session struct {
	cfg            settings.Config
	operands       []string
	dryRun         bool
	writes         bool // the command writes (and may owe pushes)
	stdout, stderr io.Writer
	logger         *slog.Logger
	aws            *sdkconfig.Provider // the one SDK configuration, built on first use
	app            *app.App
}

// service opens the back end (once) and returns the service on it.
func (s *session) service(ctx context.Context) (*security.Service, error) {
	if s.app == nil {
		cfg := app.Config{Settings: s.cfg, Logger: s.logger, AWS: s.aws.Get, AEFPush: security.AEFPushQueued}
		// Only a command that writes may push: the others (and dry runs, which owe what they
		// would write) neither read nor mint the CCF's certificate.
		if s.writes && !s.dryRun {
			if err := fullapp.WithCCF(&cfg); err != nil {
				return nil, err
			}
		}
		if cfg.AEFPush == security.AEFPushQueued && s.writes && !s.dryRun {
			fmt.Fprintln(s.stderr, "pushes to AEFs: no CCF certificate here (-ccf-cert, -ccf-key): the delivery worker makes them")
		}
		a, err := fullapp.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		s.app = a
	}
	return s.app.Service, nil
}

var commands = []command{
	{name: "import", operands: "-f FILE [-prune]", summary: "upsert a registry document (JSON, - for standard input), with progress on large files; -prune also removes what it omits",
		store: true, writes: true, define: defineImport},
	{name: "list", summary: "list the API invokers (with a summary of each security context), the AEFs and the service APIs; no secret",
		store: true, define: defineList},
	{name: "export", operands: "[-o FILE]", summary: "write the registry as a document import reads back (onboardingSecretSha256, never a secret)",
		store: true, define: defineExport},
	{name: "remove-invoker", operands: "ID", summary: "offboard an API invoker: its registry record and its security context",
		store: true, writes: true, define: removeCommand("remove-invoker", func(ctx context.Context, svc *security.Service, id string) (string, error) {
			return "", svc.RemoveInvoker(ctx, id)
		})},
	{name: "remove-aef", operands: "ID", summary: "delete an AEF (refused while it still publishes APIs)",
		store: true, writes: true, define: removeCommand("remove-aef", func(ctx context.Context, svc *security.Service, id string) (string, error) {
			return "", svc.RemoveAEF(ctx, id)
		})},
	{name: "remove-api", operands: "ID", summary: "withdraw a published API: revoked from every security context, with notifications",
		store: true, writes: true, define: removeCommand("remove-api", func(ctx context.Context, svc *security.Service, id string) (string, error) {
			n, err := svc.RemoveAPI(ctx, id)
			return fmt.Sprintf("revoked %s from %d security contexts\n", id, n), err
		})},
	{name: "revoke", operands: "-invoker ID [-aef ID] [-apis A,B] -cause CAUSE", summary: "revoke an invoker's authorization as the CCF: its entries (at one AEF, for some APIs, or all), notifying it and pushing to each AEF",
		store: true, writes: true, define: defineRevoke},
	{name: "revoke-cert", operands: "-id ID -cert FILE.pem", summary: "revoke a client certificate of an invoker or AEF: refused from then on (no context changes); an invoker's AEFs are pushed the revocation",
		store: true, writes: true, define: defineRevokeCert},
	{name: "ccf-csr", operands: "-ccf-kms-key KEY [-o FILE]", summary: "write the certificate request of the CCF's client certificate towards AEFs (CN -ccf-name, clientAuth), signed by its KMS key",
		define: defineCCFCSR},
	{name: "outbox-list", summary: "list the notifications owed and not yet delivered, pending and dead-lettered",
		store: true, define: defineOutboxList},
	{name: "outbox-redrive", operands: "ID | -all", summary: "make a dead-lettered notification (or all of them) due again, with a new retry window",
		store: true, writes: true, define: defineRedrive},
	{name: "keys", operands: keysOperands, summary: "the token-signing key set: list it; rotate (publish a new wrapped key); retire a key; import-env (record CAPIF_KMS_KEY_IDS); add a KMS key",
		store: true, writes: true, define: defineKeys},
	{name: "outbox-drop", operands: "ID", summary: "delete an owed notification: it will never be delivered",
		store: true, writes: true, define: removeCommand("outbox-drop", func(ctx context.Context, svc *security.Service, id string) (string, error) {
			return "", svc.DropNotification(ctx, id)
		})},
}

const backEndHelp = `Every command that touches a store needs its back end named (there is no default):
  -store embedded -data DIR   the local runner's embedded store (stop the runner first: it locks the file)
  -stack NAME                 DynamoDB: the tables of the SAM stack NAME (NAME-contexts, NAME-registry, NAME-outbox)
  -table-prefix PREFIX        DynamoDB: tables PREFIXcontexts, PREFIXregistry, PREFIXoutbox
                              (or all of CAPIF_CONTEXTS_TABLE, CAPIF_REGISTRY_TABLE, CAPIF_OUTBOX_TABLE)
DynamoDB uses the standard AWS configuration (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB, ...).
Flags go before or after the command name; put -- before an operand that begins with "-".`

func usage() string {
	var b strings.Builder
	b.WriteString("usage: capif-admin [flags] COMMAND [command flags] [operands]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-26s %s\n", c.name+" "+c.operands, c.summary)
	}
	fmt.Fprintf(&b, "  %-26s %s\n\n%s\n\nflags:", "help [COMMAND]", "this text, or a command's flags", backEndHelp)
	return b.String()
}

func lookup(name string) (command, error) {
	for _, c := range commands {
		if c.name == name {
			return c, nil
		}
	}
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return command{}, fmt.Errorf("unknown command %q (%s, or help)", name, strings.Join(names, ", "))
}

func mainErr(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // asked for: the usage went to stdout
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name, rest := splitCommand(args)
	if name == "help" {
		name, rest = splitCommand(rest)
		if name == "" {
			return load(command{}, append(rest, "-h"), getenv, stdout, stderr, nil)
		}
		c, err := lookup(name)
		if err != nil {
			return err
		}
		return load(c, append(rest, "-h"), getenv, stdout, stderr, nil)
	}
	if name == "" {
		if err := load(command{}, args, getenv, stdout, stderr, nil); err != nil {
			return err
		}
		return fmt.Errorf("no command (see capif-admin help)")
	}
	c, err := lookup(name)
	if err != nil {
		return err
	}
	return load(c, rest, getenv, stdout, stderr, func(cfg settings.Config, operands []string, dryRun bool, run func(context.Context, *session) error) error {
		logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
		cfg.LogWarnings(logger)
		s := &session{cfg: cfg, operands: operands, dryRun: dryRun, writes: c.writes, stdout: stdout, stderr: stderr, logger: logger,
			aws: standard.Provider(ctx, logger)}
		defer func() {
			if s.app != nil {
				_ = s.app.Close()
			}
		}()
		if c.store {
			if err := requireBackEnd(c, cfg); err != nil {
				return err
			}
			if cfg.Store == settings.StoreDynamoDB {
				if _, err := s.aws.Get(); err != nil {
					return err
				}
			}
		}
		if c.writes {
			describeTarget(ctx, c.name, s)
		}
		return run(ctx, s)
	})
}

// load parses the settings and c's flags from args; -h prints the usage to stdout and returns
// flag.ErrHelp. then runs with the result (nil: parse only).
func load(c command, args []string, getenv func(string) string, stdout, stderr io.Writer,
	then func(cfg settings.Config, operands []string, dryRun bool, run func(context.Context, *session) error) error) error {
	var run func(context.Context, *session) error
	var dryRun *bool
	text := usage()
	name := "capif-admin"
	if c.name != "" {
		name += " " + c.name
		text = fmt.Sprintf("usage: capif-admin [flags] %s %s\n\n%s.\n\n%s\n\nflags:", c.name, c.operands, c.summary, backEndHelp)
	}
	var out bytes.Buffer
	cfg, operands, err := settings.Load(settings.Admin, args, getenv, settings.Options{Name: name, Output: &out, Usage: text,
		Flags: func(fs *flag.FlagSet) {
			if c.writes {
				dryRun = fs.Bool("dry-run", false, "check the input and print what would be touched; write nothing (opens nothing, but for import -prune, which reads the store to say what it would remove)")
			}
			if c.define != nil {
				run = c.define(fs)
			}
		}})
	if errors.Is(err, flag.ErrHelp) {
		_, _ = stdout.Write(out.Bytes())
		return err
	}
	_, _ = stderr.Write(out.Bytes())
	if err != nil || then == nil {
		return err
	}
	return then(cfg, operands, dryRun != nil && *dryRun, run)
}

// splitCommand finds the command name among args (flags may come before and after it): the
// first operand that is not the value of a flag. A flag takes a value unless it is a boolean
// one of the settings, -h or -help, or is written -name=value.
func splitCommand(args []string) (string, []string) {
	boolean := map[string]bool{"h": true, "help": true, "dry-run": true}
	for _, s := range settings.Table {
		if s.For&settings.Admin != 0 && s.Bool {
			boolean[s.Flag] = true
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return args[i+1], append(args[:i:i], args[i+2:]...)
			}
			return "", args
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return a, append(args[:i:i], args[i+1:]...)
		}
		flagName := strings.TrimLeft(a, "-")
		if !strings.Contains(flagName, "=") && !boolean[flagName] {
			i++ // its value
		}
	}
	return "", args
}

func requireBackEnd(c command, cfg settings.Config) error {
	if cfg.Store == settings.StoreNone {
		return fmt.Errorf("%s: no back end named; capif-admin touches only the store it is told to:\n%s", c.name, backEndHelp)
	}
	return nil
}

// describeTarget prints what a writing command is about to touch.
func describeTarget(ctx context.Context, name string, s *session) {
	w := s.stdout
	mode := ""
	if s.dryRun {
		mode = " (dry run: nothing is opened or written)"
	}
	switch s.cfg.Store {
	case settings.StoreEmbedded:
		dir, err := filepath.Abs(s.cfg.DataDir)
		if err != nil {
			dir = s.cfg.DataDir
		}
		fmt.Fprintf(w, "%s on the embedded store in %s%s\n", name, dir, mode)
	case settings.StoreDynamoDB:
		fmt.Fprintf(w, "%s on DynamoDB%s\n", name, mode)
		awsCfg, _ := s.aws.Get() // built when the back end was checked
		opts := awsddb.NewFromConfig(awsCfg).Options()
		region := opts.Region
		if region == "" {
			region = "(none configured)"
		}
		fmt.Fprintf(w, "  region    %s\n", region)
		if opts.BaseEndpoint != nil {
			fmt.Fprintf(w, "  endpoint  %s (override)\n", *opts.BaseEndpoint)
		}
		t := s.cfg.Tables
		fmt.Fprintf(w, "  tables    %s, %s, %s\n", t.Contexts, t.Registry, t.Outbox)
		// The account is named only when STS answers; an endpoint override is a local peer,
		// whose "account" would mean nothing.
		if opts.BaseEndpoint == nil {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if account, err := callerAccount(actx, awsCfg); err == nil && account != "" {
				fmt.Fprintf(w, "  account   %s\n", account)
			}
		}
	}
}

// callerAccount asks STS which account the credentials belong to (tests replace it).
var callerAccount = func(ctx context.Context, cfg aws.Config) (string, error) {
	out, err := sts.NewFromConfig(cfg, func(o *sts.Options) { o.RetryMaxAttempts = 1 }).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.Account), nil
}

// importBatch is how many records one progress step imports: each batch is one registry change.
const importBatch = 100

func defineImport(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	file := fs.String("f", "", "registry JSON file (- for standard input)")
	prune := fs.Bool("prune", false, "also remove the API invokers, AEFs and service APIs the file omits, as remove-* does (notifications included)")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) > 0 {
			return fmt.Errorf("import: unexpected arguments: %s", strings.Join(s.operands, " "))
		}
		if *file == "" {
			return errors.New("import: -f FILE is required")
		}
		doc, err := registrydoc.Read(*file)
		if err != nil {
			return err
		}
		// The whole document is checked before anything is written.
		if err := doc.Validate(); err != nil {
			return fmt.Errorf("registry %s: %w", *file, err)
		}
		counts := fmt.Sprintf("%d API invokers, %d AEFs, %d service APIs", len(doc.APIInvokers), len(doc.AEFs), len(doc.ServiceAPIs))
		if s.dryRun && !*prune {
			fmt.Fprintf(s.stdout, "dry run: %s holds %s and is valid; nothing written\n", *file, counts)
			return nil
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		var omitted security.Omitted
		if *prune {
			if omitted, err = svc.OmittedBy(ctx, doc); err != nil {
				return err
			}
			if s.dryRun {
				fmt.Fprintf(s.stdout, "dry run: %s holds %s and is valid; nothing written\n", *file, counts)
				printOmitted(s.stdout, "would remove", omitted)
				return nil
			}
		}
		start := time.Now()
		batches := importBatches(doc)
		total, done := 0, 0
		for _, b := range batches {
			total += b.records
		}
		for _, b := range batches {
			if err := svc.ImportRegistry(ctx, b.doc); err != nil {
				return fmt.Errorf("import stopped after %d of %d records (an import is an upsert: run it again once fixed): %w", done, total, err)
			}
			done += b.records
			if len(batches) > 1 {
				fmt.Fprintf(s.stderr, "import: %d/%d records (%d%%), %s\n", done, total, done*100/total, time.Since(start).Round(time.Millisecond))
			}
		}
		fmt.Fprintf(s.stdout, "imported %s from %s in %s\n", counts, *file, time.Since(start).Round(time.Millisecond))
		if !*prune {
			return nil
		}
		if err := svc.Prune(ctx, omitted); err != nil {
			return fmt.Errorf("prune stopped (run the import again to complete it): %w", err)
		}
		printOmitted(s.stdout, "removed", omitted)
		return nil
	}
}

// printOmitted says what pruning removes: what the document omits, of each kind.
func printOmitted(w io.Writer, verb string, o security.Omitted) {
	if o.Empty() {
		fmt.Fprintf(w, "%s nothing: the file names every API invoker, AEF and service API\n", verb)
		return
	}
	for _, k := range []struct {
		kind string
		ids  []string
	}{{"service APIs", o.APIs}, {"API invokers", o.Invokers}, {"AEFs", o.AEFs}} {
		if len(k.ids) > 0 {
			fmt.Fprintf(w, "%s %d %s: %s\n", verb, len(k.ids), k.kind, strings.Join(k.ids, ", "))
		}
	}
}

// defineList: the registry for an operator: who is onboarded, what each invoker's context
// holds (targets and selected methods), what is published. No secret: whether an invoker has
// an onboarding secret, never its hash; destinations as scheme and host.
func defineList(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	return func(ctx context.Context, s *session) error {
		if len(s.operands) != 0 {
			return errors.New("list takes no operands")
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		doc, err := svc.ExportRegistry(ctx)
		if err != nil {
			return err
		}
		ids := make([]string, len(doc.APIInvokers))
		for i, inv := range doc.APIInvokers {
			ids[i] = inv.APIInvokerID
		}
		contexts, err := svc.ContextSummaries(ctx, ids)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "API INVOKER\tSECRET\tDESTINATION\tSECURITY CONTEXT\n")
		for _, inv := range doc.APIInvokers {
			secret := "no"
			if inv.OnboardingSecretSHA256 != "" {
				secret = "yes"
			}
			dest := "-"
			if inv.NotificationDestination != "" {
				dest = security.RedactURL(inv.NotificationDestination)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", inv.APIInvokerID, secret, dest, describeContext(contexts, inv.APIInvokerID))
		}
		fmt.Fprintf(tw, "\nAEF\tPUBLISHES\tREVOCATIONS PUSHED TO\n")
		publishes := map[string][]string{}
		for _, d := range doc.ServiceAPIs {
			for _, p := range d.AefProfiles {
				publishes[p.AefID] = append(publishes[p.AefID], d.APIID)
			}
		}
		for _, a := range doc.AEFs {
			root := "- (no aefSecurityRoot: none)"
			if a.AefSecurityRoot != nil {
				root = *a.AefSecurityRoot + capif.RevokeAuthorizationPath
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.AefID, cmp.Or(strings.Join(publishes[a.AefID], ", "), "-"), root)
		}
		fmt.Fprintf(tw, "\nSERVICE API\tNAME\tAEFS\n")
		for _, d := range doc.ServiceAPIs {
			var aefs []string
			for _, p := range d.AefProfiles {
				aefs = append(aefs, p.AefID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.APIID, d.APIName, strings.Join(aefs, ", "))
		}
		fmt.Fprintf(tw, "\nPINNED CERTIFICATE (KEY)\tPRINCIPAL\n")
		pinned := func(id string, certs *[]string) {
			if certs == nil {
				return
			}
			for _, p := range *certs {
				if block, _ := pem.Decode([]byte(p)); block != nil {
					if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
						fmt.Fprintf(tw, "%s\t%s\n", capif.CertificateKey(cert), id)
					}
				}
			}
		}
		for _, inv := range doc.APIInvokers {
			pinned(inv.APIInvokerID, inv.Certificates)
		}
		for _, a := range doc.AEFs {
			pinned(a.AefID, a.Certificates)
		}
		revoked, err := svc.RevokedCertificates(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "\nREVOKED CERTIFICATE (KEY)\tPRINCIPAL\tISSUER\tSERIAL\tNOT AFTER\n")
		for _, c := range revoked {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Key, c.PrincipalID, c.Issuer, c.Serial, c.NotAfter.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "%d API invokers (%d with a security context), %d AEFs, %d service APIs\n",
			len(doc.APIInvokers), len(contexts), len(doc.AEFs), len(doc.ServiceAPIs))
		return nil
	}
}

// describeContext is one line of an invoker's security context: each entry's targets and method.
func describeContext(contexts map[string]security.ContextSummary, id string) string {
	sum, ok := contexts[id]
	if !ok {
		return "none"
	}
	var entries []string
	for _, e := range sum.Entries {
		var targets []string
		for _, t := range e.Targets {
			targets = append(targets, t.AefID+"/"+t.APIID)
		}
		entries = append(entries, strings.Join(targets, "+")+" "+e.Method)
	}
	return fmt.Sprintf("version %d: %s", sum.Version, strings.Join(entries, "; "))
}

// defineExport writes the registry as a document: export, import into an empty store, export
// again gives the same bytes.
func defineExport(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	out := fs.String("o", "-", "output file (- for standard output)")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) != 0 {
			return errors.New("export takes no operands (-o FILE names the output)")
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		doc, err := svc.ExportRegistry(ctx)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if *out == "-" {
			_, err = s.stdout.Write(b)
			return err
		}
		// The file holds secret hashes: readable by the owner only.
		return devpki.WriteFile(*out, b, 0o600)
	}
}

type batch struct {
	doc     security.RegistryDoc
	records int
}

// importBatches cuts a validated document into batches of at most importBatch records, in the
// order an import needs them: invokers, AEFs, then APIs, each API batch listing the AEFs its
// profiles name again (an unchanged upsert) so it validates on its own.
func importBatches(doc security.RegistryDoc) []batch {
	var out []batch
	for i := 0; i < len(doc.APIInvokers); i += importBatch {
		part := doc.APIInvokers[i:min(i+importBatch, len(doc.APIInvokers))]
		out = append(out, batch{security.RegistryDoc{APIInvokers: part}, len(part)})
	}
	for i := 0; i < len(doc.AEFs); i += importBatch {
		part := doc.AEFs[i:min(i+importBatch, len(doc.AEFs))]
		out = append(out, batch{security.RegistryDoc{AEFs: part}, len(part)})
	}
	for i := 0; i < len(doc.ServiceAPIs); i += importBatch {
		part := doc.ServiceAPIs[i:min(i+importBatch, len(doc.ServiceAPIs))]
		seen := map[string]bool{}
		var aefs []security.AEFRecord
		for _, d := range part {
			for _, p := range d.AefProfiles {
				if !seen[p.AefID] {
					seen[p.AefID] = true
					aefs = append(aefs, security.AEFRecord{AefID: p.AefID})
				}
			}
		}
		out = append(out, batch{security.RegistryDoc{AEFs: aefs, ServiceAPIs: part}, len(part)})
	}
	return out
}

// removeCommand is a command that removes one registry entry by id.
func removeCommand(name string, remove func(ctx context.Context, svc *security.Service, id string) (string, error)) func(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	return func(*flag.FlagSet) func(ctx context.Context, s *session) error {
		return func(ctx context.Context, s *session) error {
			if len(s.operands) != 1 || s.operands[0] == "" {
				return fmt.Errorf("%s takes exactly one id", name)
			}
			id := s.operands[0]
			if s.dryRun {
				fmt.Fprintf(s.stdout, "dry run: would %s %s; nothing written\n", name, id)
				return nil
			}
			svc, err := s.service(ctx)
			if err != nil {
				return err
			}
			msg, err := remove(ctx, svc, id)
			if errors.Is(err, security.ErrNotFound) {
				return fmt.Errorf("%s %q: %w", name, id, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "%s%s %s: done\n", msg, name, id)
			return nil
		}
	}
}

// defineRevoke is a revocation the CCF initiates (TS 23.222 clause 8.23.4): it prints what is
// (or, with -dry-run, would be) owed: the invoker's notification and the push to each AEF.
func defineRevoke(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	invoker := fs.String("invoker", "", "the apiInvokerId whose authorization is revoked (required)")
	aef := fs.String("aef", "", "only the entries at this aefId (default: every AEF)")
	apis := fs.String("apis", "", "only these apiIds, comma-separated (default: every API)")
	cause := fs.String("cause", "", "the cause: "+strings.Join(capif.KnownCauses, ", ")+" (Rel-18 peers know only "+capif.OverlimitUsage+" and "+capif.UnexpectedReason+")")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) != 0 || *invoker == "" || *cause == "" {
			return errors.New("revoke takes -invoker ID and -cause CAUSE (and optionally -aef ID, -apis A,B), no operands")
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		owed, err := svc.RevokeByCCF(ctx, security.CCFRevocation{APIInvokerID: *invoker, AefID: *aef, APIIDs: settings.ParseList(*apis), Cause: *cause}, s.dryRun)
		if err != nil {
			return fmt.Errorf("revoke %s: %w", *invoker, err)
		}
		verb := "revoked"
		if s.dryRun {
			verb = "dry run: would revoke"
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		for _, o := range owed {
			n := o.Notification
			if o.Receiver() == security.ToAEF {
				fmt.Fprintf(tw, "  push to AEF %s\t%s\n", n.AefID, security.RedactURL(o.Destination))
				continue
			}
			fmt.Fprintf(tw, "%s %s at %s\t%s\tnotify %s\t%s\n", verb, strings.Join(n.APIIDs, ","), n.AefID, n.Cause, n.APIInvokerID, security.RedactURL(o.Destination))
			if !slices.ContainsFunc(owed, func(p security.Owed) bool { return p.Receiver() == security.ToAEF && p.Notification.AefID == n.AefID }) {
				fmt.Fprintf(tw, "  no push to AEF %s\tit has no aefSecurityRoot\n", n.AefID)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if s.dryRun {
			fmt.Fprintln(s.stdout, "dry run: nothing written")
		}
		return nil
	}
}

// defineRevokeCert revokes one client certificate: refused from its next request on, kept until
// its notAfter plus a day. It prints the certificate and the pushes it owes.
func defineRevokeCert(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	id := fs.String("id", "", "the apiInvokerId or aefId the certificate names (its one Subject CN)")
	file := fs.String("cert", "", "the certificate, PEM")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) != 0 || *id == "" || *file == "" {
			return errors.New("revoke-cert takes -id ID and -cert FILE.pem, no operands")
		}
		pemText, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("revoke-cert: %w", err)
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		rev, pushes, err := svc.RevokeCertificate(ctx, *id, string(pemText), s.dryRun)
		if err != nil {
			return fmt.Errorf("revoke-cert %s: %w", *id, err)
		}
		verb := "revoked"
		if s.dryRun {
			verb = "dry run: would revoke"
		}
		fmt.Fprintf(s.stdout, "%s certificate %s of %s (issuer %s, serial %s, notAfter %s; kept until %s)\n", verb, rev.Key, rev.PrincipalID,
			rev.Issuer, rev.Serial, rev.NotAfter.Format(time.RFC3339), rev.Until().Format(time.RFC3339))
		for _, o := range pushes {
			fmt.Fprintf(s.stdout, "  push to AEF %s\t%s\t%s\n", o.Notification.AefID, strings.Join(o.Notification.APIIDs, ","), security.RedactURL(o.Destination))
		}
		if s.dryRun {
			fmt.Fprintln(s.stdout, "dry run: nothing written")
		}
		return nil
	}
}

// defineCCFCSR writes a PKCS #10 request for the CCF's client certificate: Subject CN the
// CCF's name, extended key usage clientAuth, the public key and signature of the KMS key (the
// private key never leaves KMS). The operator's CCF CA issues the certificate from it.
func defineCCFCSR(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	out := fs.String("o", "-", "output file (- for standard output)")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) != 0 || s.cfg.CCFKMSKey == "" {
			return errors.New("ccf-csr takes -ccf-kms-key KEY (the stack's CcfClientKeyId output) and no operands")
		}
		awsCfg, err := s.aws.Get()
		if err != nil {
			return err
		}
		client := awskms.NewFromConfig(awsCfg)
		pub, err := kms.PublicKeyOf(ctx, client, s.cfg.CCFKMSKey)
		if err != nil {
			return err
		}
		key, err := kms.NewTLSKey(client, s.cfg.CCFKMSKey, pub)
		if err != nil {
			return err
		}
		eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}}) // id-kp-clientAuth
		if err != nil {
			return err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:         pkix.Name{CommonName: s.cfg.CCFName},
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: eku}}, // extKeyUsage
		}, key)
		if err != nil {
			return fmt.Errorf("ccf-csr: %w", err)
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		if *out == "-" {
			_, err = s.stdout.Write(b)
			return err
		}
		return devpki.WriteFile(*out, b, 0o644)
	}
}

// defineOutboxList prints one line per outbox record: never its body (a revocation may carry
// the revoked access token), and the destination as scheme://host only.
func defineOutboxList(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	deadOnly := fs.Bool("dead", false, "only the dead-lettered ones")
	return func(ctx context.Context, s *session) error {
		if len(s.operands) != 0 {
			return errors.New("outbox-list takes no operands")
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		owed, err := svc.Outbox(ctx)
		if err != nil {
			return err
		}
		slices.SortFunc(owed, func(a, b security.Owed) int { return a.CreatedAt.Compare(b.CreatedAt) })
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tSTATE\tINVOKER\tAEF\tDESTINATION\tATTEMPTS\tAGE\tNEXT ATTEMPT\tLAST ERROR")
		now := time.Now()
		shown := 0
		for _, o := range owed {
			state, next := "pending", "now"
			switch {
			case o.Dead:
				state, next = "dead", "-"
			case o.ClaimedUntil.After(now):
				state = "in delivery"
			}
			if *deadOnly && !o.Dead {
				continue
			}
			if !o.Dead && o.NextAttempt.After(now) {
				next = "in " + o.NextAttempt.Sub(now).Round(time.Second).String()
			}
			age := "-"
			if !o.CreatedAt.IsZero() {
				age = now.Sub(o.CreatedAt).Round(time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", o.ID, o.Receiver(), state, o.APIInvokerID, o.Notification.AefID,
				security.RedactURL(o.Destination), o.Attempts, age, next, oneLine(o.LastError))
			shown++
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "%d notifications\n", shown)
		return nil
	}
}

// defineRedrive redrives one dead-lettered notification, or every one with -all.
func defineRedrive(fs *flag.FlagSet) func(ctx context.Context, s *session) error {
	all := fs.Bool("all", false, "every dead-lettered notification")
	return func(ctx context.Context, s *session) error {
		if *all == (len(s.operands) == 1) || len(s.operands) > 1 {
			return errors.New("outbox-redrive takes exactly one id, or -all")
		}
		if s.dryRun {
			what := "every dead-lettered notification"
			if !*all {
				what = s.operands[0]
			}
			fmt.Fprintf(s.stdout, "dry run: would redrive %s; nothing written\n", what)
			return nil
		}
		svc, err := s.service(ctx)
		if err != nil {
			return err
		}
		ids := s.operands
		if *all {
			owed, err := svc.Outbox(ctx)
			if err != nil {
				return err
			}
			ids = nil
			for _, o := range owed {
				if o.Dead {
					ids = append(ids, o.ID)
				}
			}
		}
		for _, id := range ids {
			if err := svc.Redrive(ctx, id); err != nil {
				return fmt.Errorf("outbox-redrive %q: %w", id, err)
			}
			fmt.Fprintf(s.stdout, "outbox-redrive %s: due now\n", id)
		}
		fmt.Fprintf(s.stdout, "%d redriven\n", len(ids))
		return nil
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	if s == "" {
		return "-"
	}
	return s
}
