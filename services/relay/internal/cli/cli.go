// Package cli implements the `relay` command: `relay dev`, the demo
// receiver, and the operator CLI over the HTTP API and Kafka.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/relayhq/relay/services/relay/internal/client"
)

// command is one subcommand.
type command struct {
	usage string
	run   func(ctx context.Context, a *app, args []string) error
}

// app carries what every command shares.
type app struct {
	out, errOut io.Writer
	getenv      func(string) string
}

func commands() map[string]command {
	return map[string]command{
		"dev":            {"relay dev [--data-dir DIR]: run the whole system in one process", runDev},
		"receiver":       {"relay receiver [--addr ADDR] [--secret whsec_…]: run the demo webhook receiver", runReceiver},
		"sources":        {"relay sources create|ls|get|patch|rm|rotate [--scheme S] [--param name=value]: manage sources", runSources},
		"subs":           {"relay subs create|ls|get|patch|rm|enable|disable|rotate --source ID: manage subscriptions", runSubs},
		"send":           {"relay send --source ID --secret S [--scheme relay|stripe|github|standard-webhooks|shopify|slack|hmac] [--type T] [--data JSON|@file]: send a signed webhook", runSend},
		"events":         {"relay events ls|get --source ID: list received events", runEvents},
		"deliveries":     {"relay deliveries [--source ID] EVENT_ID: show an event's deliveries", runDeliveries},
		"replay":         {"relay replay [--source ID] [--subscription ID] [--force] EVENT_ID | --source ID --since D|--from T [--to T]: deliver an event (or every event of a time range) again to subscriptions not yet delivered (or to one; --force: delivered ones too)", runReplay},
		"dlq":            {"relay dlq ls|redrive [--subscription ID]: list or redrive parked deliveries", runDLQ},
		"metrics":        {"relay metrics --source ID [--from DAY] [--to DAY]: events received per day and type", runMetrics},
		"secrets":        {"relay secrets rewrap: re-encrypt stored secrets under RELAY_SECRET_KEY (a key rotation's step 3)", runSecrets},
		"tail":           {"relay tail [--brokers B] [--from-start]: follow relay.events from Kafka", runTail},
		"archive":        {"relay archive ls|cat --source ID [--from DAY] [--to DAY] [--payload]: read the S3 archive", runArchive},
		"standin":        {"relay standin kafka|redis|s3 [--addr ADDR]: run one embedded stand-in as its own process (tests)", runStandin},
		"broker-version": {"relay broker-version --brokers B [--wait D]: wait for a Kafka broker and print its version", runBrokerVersion},
		"version":        {"relay version: print the version", runVersion},
		"smoke":          {"relay smoke [--receiver URL] [--s3-endpoint URL --bucket B]: check a running Relay end to end (make smoke)", runSmoke},
		"bench":          {"relay bench [--step D] [--out FILE]: run every benchmark scenario (make bench)", runBench},
		"bench-server":   {"relay bench-server hmac|proxy --addr A --secret S [--forward URL]...: a baseline server of the benchmarks", runBenchServer},
		"probe":          {"relay probe URL: exit 0 when URL answers 200 within 3s (container health checks)", runProbe},
		"free-port":      {"relay free-port: print a free TCP port on 127.0.0.1 (test scripts)", runFreePort},
	}
}

// Main runs the relay command with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string) int {
	a := &app{out: os.Stdout, errOut: os.Stderr, getenv: os.Getenv}
	return a.main(ctx, args)
}

func (a *app) main(ctx context.Context, args []string) int {
	cmds := commands()
	if len(args) == 0 || isHelp(args[0]) {
		a.usage(cmds)
		return 2
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(a.errOut, "relay: unknown command %q\n\n", args[0])
		a.usage(cmds)
		return 2
	}
	if verb, ok := c.verb(); ok && len(args) == 2 && isHelp(args[1]) {
		// Without a verb there are no flags to list yet: say what comes next.
		fmt.Fprintf(a.errOut, "Usage: %s\n\nEach of them lists its flags with -h: relay %s %s -h\n", c.usage, args[0], strings.SplitN(verb, "|", 2)[0])
		return 2
	}
	if err := c.run(ctx, a, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintf(a.errOut, "relay %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// verb returns the verbs a command takes first ("create|ls|get"), as its
// usage spells them.
func (c command) verb() (string, bool) {
	f := strings.Fields(c.usage)
	if len(f) < 3 || strings.HasPrefix(f[2], "[") || strings.HasPrefix(f[2], "-") || strings.ToUpper(f[2]) == f[2] {
		return "", false
	}
	return strings.TrimSuffix(f[2], ":"), true
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

func (a *app) usage(cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(a.errOut, "Usage: relay COMMAND [flags]\n\nCommands:")
	for _, n := range names {
		fmt.Fprintf(a.errOut, "  %s\n", cmds[n].usage)
	}
	fmt.Fprintln(a.errOut, "\nThe API commands read RELAY_API (default http://127.0.0.1:8080) and RELAY_ADMIN_TOKEN, or --api and --token; --json prints raw JSON.")
}

// apiFlags are the flags of every command that talks to the API.
type apiFlags struct {
	api, token string
	json       bool
	format     string
}

func (a *app) apiFlagSet(name string, f *apiFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.errOut)
	def := a.getenv("RELAY_API")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&f.api, "api", def, "Relay API base URL (RELAY_API)")
	fs.StringVar(&f.token, "token", a.getenv("RELAY_ADMIN_TOKEN"), "admin token (RELAY_ADMIN_TOKEN)")
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
		return nil, errors.New("no admin token: set RELAY_ADMIN_TOKEN (printed by `relay dev`) or pass --token")
	}
	return client.New(f.api, f.token), nil
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
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
