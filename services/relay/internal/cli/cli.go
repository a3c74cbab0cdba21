// Package cli implements the `relay` command on cobra: `relay dev`, the
// demo receiver, and the operator CLI over the HTTP API and Kafka, a
// command per noun and verb, with shell completion (`relay completion`).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relayhq/relay/services/relay/internal/client"
)

// app carries what every command shares.
type app struct {
	out, errOut io.Writer
	getenv      func(string) string
}

// root is the relay command and every subcommand under it.
func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "relay",
		Short: "Relay catches webhooks durably and delivers them with retries, a DLQ and replay",
		Long: `Relay catches webhooks durably and delivers them with retries, a DLQ and replay.

The API commands read RELAY_API (default http://127.0.0.1:8080) and RELAY_API_KEY (an API
key, from relay keys create) or else RELAY_ADMIN_TOKEN, or --api and --token; --json prints the API's raw JSON, --format a Go template of it.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		a.leaf(&cobra.Command{Use: "dev", Short: "Run the whole system in one process on embedded stand-ins", Args: cobra.NoArgs}, a.devFlags),
		a.leaf(&cobra.Command{Use: "receiver", Short: "Run the demo webhook receiver", Args: cobra.NoArgs}, a.receiverFlags),
		a.noun("sources", "Manage sources (where senders post webhooks)", []verb{
			{"create", "Create a source; prints its ingest URL and secret"}, {"ls", "List sources"},
			{"get SOURCE_ID", "Show a source"}, {"patch SOURCE_ID", "Change a source's settings"},
			{"rm SOURCE_ID", "Delete a source and its subscriptions"}, {"rotate SOURCE_ID", "Rotate a source's signing secret"},
		}, a.sourcesFlags),
		a.noun("subs", "Manage subscriptions (where a source's events are delivered)", []verb{
			{"create", "Create a subscription; prints its signing secret"}, {"ls", "List a source's subscriptions"},
			{"get SUBSCRIPTION_ID", "Show a subscription"}, {"patch SUBSCRIPTION_ID", "Change a subscription"},
			{"rm SUBSCRIPTION_ID", "Delete a subscription"}, {"enable SUBSCRIPTION_ID", "Enable a subscription"},
			{"disable SUBSCRIPTION_ID", "Disable a subscription (its deliveries are parked in the DLQ)"},
			{"rotate SUBSCRIPTION_ID", "Rotate a subscription's signing secret"},
			{"lane SUBSCRIPTION_ID --key K", "Show an ordered subscription's queue for one ordering key"},
			{"skip-key SUBSCRIPTION_ID --key K", "Move a key blocked by its parked head on to its next event"},
		}, a.subsFlags),
		a.leaf(&cobra.Command{Use: "send", Short: "Send a signed webhook to a source, signed as its provider signs", Args: cobra.NoArgs}, a.sendFlags),
		a.noun("events", "List and show received events", []verb{
			{"ls", "List a source's events, newest first"}, {"get EVENT_ID", "Show an event with its payload"},
		}, a.eventsFlags),
		a.leaf(&cobra.Command{Use: "deliveries EVENT_ID", Short: "Show an event's deliveries"}, a.deliveriesFlags),
		a.leaf(&cobra.Command{
			Use:   "replay EVENT_ID | --source ID --since D | --from T [--to T]",
			Short: "Deliver an event (or every event of a time range) again",
			Long: "Deliver an event, or every event of a time range, again to the subscriptions not yet delivered\n" +
				"(or to one, with --subscription; --force: to delivered ones too).",
		}, a.replayFlags),
		a.noun("dlq", "List or redrive parked deliveries", []verb{
			{"ls", "List parked deliveries"}, {"redrive", "Queue parked deliveries again"},
		}, a.dlqFlags),
		a.leaf(&cobra.Command{Use: "metrics", Short: "Events received per day and type", Args: cobra.NoArgs}, a.metricsFlags),
		a.noun("keys", "Manage API keys (admin, write or read; optionally for some sources only)", []verb{
			{"create --name N --scope S", "Create a key; prints its token, once"}, {"ls", "List keys (never their tokens)"},
			{"get KEY_ID", "Show a key"}, {"revoke KEY_ID", "Revoke a key at once"},
		}, a.keysFlags),
		a.noun("secrets", "Stored secrets", []verb{
			{"rewrap", "Re-encrypt stored secrets under RELAY_SECRET_KEY (a key rotation's step 3)"},
		}, a.secretsFlags),
		a.leaf(&cobra.Command{Use: "tail", Short: "Follow relay.events from Kafka", Args: cobra.NoArgs}, a.tailFlags),
		a.noun("archive", "Read the S3 archive", []verb{
			{"ls", "List a source's archive objects"}, {"cat", "Print a source's archived events (NDJSON)"},
		}, a.archiveFlags),
		a.leaf(&cobra.Command{Use: "smoke", Short: "Check a running Relay end to end (make smoke)", Args: cobra.NoArgs}, a.smokeFlags),
		a.leaf(&cobra.Command{Use: "bench", Short: "Run every benchmark scenario (make bench)", Args: cobra.NoArgs}, a.benchFlags),
		a.leaf(&cobra.Command{Use: "probe URL", Short: "Exit 0 when URL answers 200 within 3s (container health checks)", Args: cobra.ExactArgs(1)}, probeFlags),
		a.leaf(&cobra.Command{Use: "version", Short: "Print the version", Args: cobra.NoArgs}, a.versionFlags),
		// Test scaffolding: run by scripts/testenv.sh and the benchmarks,
		// not by users, so not listed.
		hidden(a.noun("standin", "Run one embedded stand-in as its own process (tests)", []verb{
			{"kafka", "An embedded Kafka broker"}, {"redis", "An embedded Redis"}, {"s3", "An embedded S3 server"},
		}, a.standinFlags)),
		hidden(a.leaf(&cobra.Command{Use: "broker-version", Short: "Wait for a Kafka broker and print its version", Args: cobra.NoArgs}, a.brokerVersionFlags)),
		hidden(a.noun("bench-server", "A baseline server of the benchmarks", []verb{
			{"hmac", "A bare HMAC-verifying server"}, {"proxy", "A two-hop proxy"},
		}, a.benchServerFlags)),
		hidden(a.leaf(&cobra.Command{Use: "free-port", Short: "Print a free TCP port on 127.0.0.1 (test scripts)", Args: cobra.NoArgs}, a.freePortFlags)),
		hidden(a.leaf(&cobra.Command{Use: "k8s-schemas", Short: "Write kubeconform's schemas from Kubernetes' swagger.json (make test-helm)", Args: cobra.NoArgs}, a.k8sSchemasFlags)),
	)
	return root
}

// runFunc runs a command with its positional arguments, once its flags are
// parsed into the variables its flags function bound them to. Each command's
// xFlags function binds its flags and returns its runFunc (or verbFunc).
type runFunc func(ctx context.Context, args []string) error

// verbFunc is runFunc for a verb of a noun command.
type verbFunc func(ctx context.Context, verb string, args []string) error

// leaf completes cmd: flags binds its flags and returns how it runs.
func (a *app) leaf(cmd *cobra.Command, flags func(cmd *cobra.Command) runFunc) *cobra.Command {
	run := flags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return run(cmd.Context(), args) }
	return cmd
}

// verb is one verb of a noun: its use line ("get SOURCE_ID") and summary.
type verb struct{ use, short string }

// noun is a command with a command per verb. Every verb takes the noun's
// flags (each flag's help says which verbs read it).
func (a *app) noun(name, short string, verbs []verb, flags func(cmd *cobra.Command) verbFunc) *cobra.Command {
	names := make([]string, len(verbs))
	for i, v := range verbs {
		names[i] = strings.Fields(v.use)[0]
	}
	cmd := &cobra.Command{
		Use: name, Short: short, Args: cobra.ArbitraryArgs, DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "help" {
				return cmd.Help()
			}
			return usageError{fmt.Errorf("unknown subcommand %q: want %s", args[0], strings.Join(names, ", "))}
		},
	}
	for _, v := range verbs {
		sub := &cobra.Command{Use: v.use, Short: v.short}
		run := flags(sub)
		sub.RunE = func(c *cobra.Command, args []string) error { return run(c.Context(), c.Name(), args) }
		hideOthers(sub, names)
		cmd.AddCommand(sub)
	}
	return cmd
}

// hideOthers hides from a verb's help the flags whose help says they serve
// other verbs only ("… (create, patch)", "cat: …"); they are still
// accepted, as they always were.
func hideOthers(sub *cobra.Command, verbs []string) {
	sub.Flags().VisitAll(func(f *pflag.Flag) {
		words := map[string]bool{}
		if i := strings.LastIndex(f.Usage, "("); i >= 0 && strings.HasSuffix(f.Usage, ")") {
			for _, w := range strings.FieldsFunc(f.Usage[i:], func(r rune) bool { return r < 'a' || r > 'z' }) {
				words[w] = true
			}
		}
		if v, _, ok := strings.Cut(f.Usage, ":"); ok {
			words[v] = true
		}
		serves := false
		for _, v := range verbs {
			serves = serves || words[v]
		}
		if serves && !words[sub.Name()] {
			f.Hidden = true
		}
	})
}

func hidden(cmd *cobra.Command) *cobra.Command {
	cmd.Hidden = true
	return cmd
}

// usageError is a command line Relay cannot read: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Main runs the relay command with args (without the program name) and
// returns the process exit code: 0, 1 when the command failed, 2 when the
// command line was wrong.
func Main(ctx context.Context, args []string) int {
	a := &app{out: os.Stdout, errOut: os.Stderr, getenv: os.Getenv}
	return a.main(ctx, args)
}

func (a *app) main(ctx context.Context, args []string) int {
	cmd, err := a.execute(ctx, args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(a.errOut, "%s: %v\n", cmd.CommandPath(), err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		fmt.Fprintf(a.errOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	return 1
}

// execute runs the command args name and returns it with its error.
func (a *app) execute(ctx context.Context, args []string) (*cobra.Command, error) {
	root := a.root()
	root.SetArgs(args)
	return root.ExecuteContextC(ctx)
}

// apiFlags are the flags of every command that talks to the API.
type apiFlags struct {
	api, token string
	json       bool
	format     string
}

// apiFlags binds the API flags to cmd and returns its flag set, for the
// command's own flags.
func (a *app) apiFlags(cmd *cobra.Command, f *apiFlags) *pflag.FlagSet {
	fs := cmd.Flags()
	def := a.getenv("RELAY_API")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&f.api, "api", def, "Relay API base URL (RELAY_API)")
	token := a.getenv("RELAY_API_KEY")
	if token == "" {
		token = a.getenv("RELAY_ADMIN_TOKEN")
	}
	fs.StringVar(&f.token, "token", token, "an API key (RELAY_API_KEY) or the admin token (RELAY_ADMIN_TOKEN)")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON answer")
	fs.StringVar(&f.format, "format", "", "print the JSON answer through a Go template, e.g. '{{.id}} {{.secret}}' (for scripts)")
	return fs
}

// raw reports whether the answer is printed as is (--json or --format)
// rather than as a table.
func (f *apiFlags) raw() bool { return f.json || f.format != "" }

// more tells, under a table cut at --limit, that the listing goes on.
func (a *app) more(next, what string) {
	if next != "" {
		fmt.Fprintf(a.out, "(more %s: raise --limit to see them)\n", what)
	}
}

// printRaw prints an API answer for --json or --format.
func (a *app) printRaw(f *apiFlags, raw []byte) error {
	if f.format == "" {
		return a.printJSON(raw)
	}
	tmpl, err := template.New("format").Option("missingkey=error").Parse(f.format)
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("--format: the answer is not JSON: %w", err)
	}
	if err := tmpl.Execute(a.out, v); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	fmt.Fprintln(a.out)
	return nil
}

func (f *apiFlags) client() (*client.Client, error) {
	if f.token == "" {
		return nil, errors.New("no API key: set RELAY_API_KEY, or RELAY_ADMIN_TOKEN (printed by `relay dev`), or pass --token")
	}
	return client.New(f.api, f.token), nil
}

// printJSON pretty-prints raw JSON.
func (a *app) printJSON(raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		_, err = a.out.Write(raw)
		return err
	}
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func (a *app) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(a.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func need(name, v string) error {
	if v == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}
