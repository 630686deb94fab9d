package dispatcher

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/hook"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

const runUsage = "HOST… SCRIPT [-- ARG…]"

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run an allowlisted script on one or more agents",
		ArgsUsage: runUsage + " | --all|--tag K=V… SCRIPT [-- ARG…] | --retry-failed REQID",
		Description: "Runs SCRIPT on every HOST (name or name:port) in parallel and prints each host's\n" +
			"result in the order given. Everything after -- goes to the script untouched.\n" +
			"--all and --tag select registered agents by their tags (beside any HOST named);\n" +
			"--batch runs them batch after batch, stopping early with --max-failures or --fail-fast.\n" +
			"--retry-failed REQID runs that stored run's script and arguments again on exactly\n" +
			"the hosts that failed in it. Exits 0 only if every host exited 0; a host not\n" +
			"attempted counts as failed. The run is stored: see 'dispatcher status REQID'.",
		Flags: slices.Concat(fanoutFlags(), selectionFlags(), rolloutFlags(), []cli.Flag{
			&cli.StringFlag{Name: "timeout", Usage: "script time limit on the agent: seconds or a duration like 90s (default: the agent's)"},
			&cli.BoolFlag{Name: "stream", Usage: "print output lines as they arrive, prefixed by host"},
			&cli.StringFlag{Name: "retry-failed", Usage: "run stored run `REQID`'s script and arguments again on exactly its failed hosts"},
		}),
		Action: func(c *cli.Context) error {
			timeout, err := parseTimeout(c.String("timeout"))
			if err != nil {
				return err
			}
			if c.Bool("stream") && c.Bool("json") {
				return cmdutil.Usagef("--stream and --json cannot be combined")
			}
			ro, err := rolloutOf(c)
			if err != nil {
				return err
			}
			retry := c.String("retry-failed")
			var sel control.Selection
			var script string
			var args []string
			if retry != "" {
				if selecting(c) || c.NArg() > 0 {
					return cmdutil.Usagef("--retry-failed takes the script, its arguments and the hosts from run %s: give no hosts, script, arguments, --all or --tag", retry)
				}
			} else {
				var hosts []string
				if hosts, script, args, err = splitRunArgs(c.Args().Slice(), selecting(c)); err != nil {
					return err
				}
				if sel, err = selectionOf(c, hosts); err != nil {
					return err
				}
			}
			return withEngine(c, func(eng *control.Engine, port, parallel int) error {
				var hosts []string
				if retry != "" {
					var prev store.Run
					if prev, hosts, err = eng.RetryFailed(retry); err != nil {
						return err
					}
					script, args = prev.Script, prev.Args
				} else if hosts, err = selectHosts(eng, sel); err != nil {
					return err
				}
				if c.Bool("dry-run") {
					return printDryRun(c, dryRunJSON{Hosts: hosts, Script: script, Args: args, RetryOf: retry}, ro)
				}
				return printRun(c, eng, control.RunRequest{Hosts: hosts, Script: script, Args: args,
					Username: c.String("username"), Token: c.String("token"), Timeout: timeout, Port: port, Parallel: parallel,
					Rollout: ro, RetryOf: retry})
			})
		},
	}
}

func pingCommand() *cli.Command {
	return &cli.Command{
		Name:      "ping",
		Usage:     "check that agents answer and are who they claim to be",
		ArgsUsage: "HOST… | --all|--tag K=V…",
		Flags:     slices.Concat(fanoutFlags(), selectionFlags(), rolloutFlags()),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 && !selecting(c) {
				return cmdutil.Usagef("ping needs at least one host: dispatcher ping HOST… (or --all, or --tag key=value)")
			}
			ro, err := rolloutOf(c)
			if err != nil {
				return err
			}
			sel, err := selectionOf(c, c.Args().Slice())
			if err != nil {
				return err
			}
			return withEngine(c, func(eng *control.Engine, port, parallel int) error {
				hosts, err := selectHosts(eng, sel)
				if err != nil {
					return err
				}
				if c.Bool("dry-run") {
					return printDryRun(c, dryRunJSON{Hosts: hosts}, ro)
				}
				progress := newProgress(c, len(hosts))
				progress.Start()
				report, err := eng.Ping(c.Context, control.PingRequest{Hosts: hosts, Username: c.String("username"),
					Token: c.String("token"), Port: port, Parallel: parallel, Rollout: ro, OnBatch: batchNotice(c, progress),
					OnResult: func(_ int, r control.PingResult) { progress.Add(r.Status != control.StatusOK) }})
				progress.Stop()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					err = output.WriteJSON(c.App.Writer, report)
				} else {
					err = output.WritePingTable(c.App.Writer, report.Results)
					if err == nil && report.Batches != nil && report.Batches.Stopped != "" {
						fmt.Fprintf(c.App.ErrWriter, "stopped early: %s\n", report.Batches.Stopped)
					}
				}
				return exitFor(report.OK, err)
			})
		},
	}
}

func discoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "discover",
		Usage: "list the version, tags and allowlisted scripts of agents (all registered agents without HOST)",
		Description: "Asks each agent for its capabilities and stores the tags it publishes in its registry record,\n" +
			"which is what --tag selects on.",
		ArgsUsage: "[HOST…] [--all|--tag K=V…]",
		Flags:     slices.Concat(fanoutFlags(), selectionFlags()),
		Action: func(c *cli.Context) error {
			sel, err := selectionOf(c, c.Args().Slice())
			if err != nil {
				return err
			}
			return withEngine(c, func(eng *control.Engine, port, parallel int) error {
				var hosts []string
				if sel.Empty() {
					hosts, err = eng.RegisteredHosts() // every registered agent, as before
				} else {
					hosts, err = selectHosts(eng, sel)
				}
				if err != nil {
					return err
				}
				if c.Bool("dry-run") {
					return printDryRun(c, dryRunJSON{Hosts: nonNilHosts(hosts)}, control.Rollout{})
				}
				progress := newProgress(c, len(hosts))
				progress.Start()
				report := &control.DiscoverReport{OK: true, Results: []control.DiscoverResult{}}
				if len(hosts) > 0 {
					report, err = eng.Discover(c.Context, control.DiscoverRequest{Hosts: hosts, Username: c.String("username"),
						Token: c.String("token"), Port: port, Parallel: parallel,
						OnResult: func(_ int, r control.DiscoverResult) { progress.Add(r.Status != control.StatusOK) }})
				}
				progress.Stop()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					err = output.WriteJSON(c.App.Writer, report)
				} else {
					err = output.WriteDiscoverTable(c.App.Writer, report.Results)
				}
				return exitFor(report.OK, err)
			})
		},
	}
}

// nonNilHosts makes an empty host list print as [].
func nonNilHosts(h []string) []string {
	if h == nil {
		return []string{}
	}
	return h
}

// batchNotice returns the callback that tells a human on stderr that a
// batch starts; nil with --json, and for a single batch of every host.
func batchNotice(c *cli.Context, progress *output.Progress) func(control.BatchEvent) {
	if c.Bool("json") {
		return nil
	}
	return func(b control.BatchEvent) {
		if b.Batches < 2 {
			return
		}
		progress.Above(func() {
			fmt.Fprintf(c.App.ErrWriter, "batch %d of %d: %d hosts (%s)\n", b.Batch, b.Batches, len(b.Hosts), strings.Join(b.Hosts, " "))
		})
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:        "status",
		Usage:       "show a stored run and its results",
		ArgsUsage:   "REQID",
		Description: "Exits 0 when the run is done and every host exited 0, as run would have.",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cmdutil.Usagef("status needs one request id: dispatcher status REQID")
			}
			e, st, err := loadStore(c)
			if err != nil {
				return err
			}
			defer e.close()
			run, err := control.Status(st, c.Args().First(), e.log)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				err = output.WriteJSON(c.App.Writer, output.StatusJSON{OK: run.OK(), Run: run})
			} else {
				err = output.WriteRunStatus(c.App.Writer, run)
			}
			return exitFor(run.OK(), err)
		},
	}
}

func listLocksCommand() *cli.Command {
	return &cli.Command{
		Name:  "list-locks",
		Usage: "list the host:script locks held by runs on this dispatcher host",
		Action: func(c *cli.Context) error {
			e, st, err := loadStore(c)
			if err != nil {
				return err
			}
			defer e.close()
			locks, err := control.ListLocks(st)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return output.WriteJSON(c.App.Writer, output.NewLocksJSON(locks))
			}
			if len(locks) == 0 {
				_, err := fmt.Fprintln(c.App.Writer, "no locks held")
				return err
			}
			return output.WriteLocksTable(c.App.Writer, locks)
		},
	}
}

// fanoutFlags are the options of commands that contact agents.
func fanoutFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "parallel", Usage: "agents contacted at once", DefaultText: "parallel in dispatcher.conf, 256"},
	}
}

// splitRunArgs splits run's arguments into hosts, the script and the
// script's arguments (everything after "--"). With a tag selection the
// hosts may be none.
func splitRunArgs(all []string, selecting bool) (hosts []string, script string, args []string, err error) {
	before, after := all, []string(nil)
	for i, a := range all {
		if a == "--" {
			before, after = all[:i], all[i+1:]
			break
		}
	}
	if len(before) < 1 || len(before) < 2 && !selecting {
		return nil, "", nil, cmdutil.Usagef("run needs at least one host (or --all, or --tag key=value) and a script: dispatcher run %s", runUsage)
	}
	return before[:len(before)-1], before[len(before)-1], after, nil
}

// parseTimeout reads --timeout: whole seconds or a Go duration; empty or 0
// means the agent's default.
func parseTimeout(s string) (d time.Duration, err error) {
	if s == "" {
		return 0, nil
	}
	d, err = config.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, cmdutil.Usagef("--timeout %q: want a number of seconds or a duration like 90s", s)
	}
	return d, nil
}

// withEngine loads the configuration and the dispatcher identity, builds
// the fan-out engine and calls f with it and the --port and --parallel
// values.
func withEngine(c *cli.Context, f func(eng *control.Engine, port, parallel int) error) error {
	port, err := cmdutil.PortFlag(c)
	if err != nil {
		return err
	}
	parallel := c.Int("parallel")
	if parallel < 0 {
		return cmdutil.Usagef("--parallel %d: want at least 1", parallel)
	}
	e, st, err := loadStore(c)
	if err != nil {
		return err
	}
	defer e.close()
	id, err := control.LoadIdentity(e.cfg.Cert, e.cfg.Key, e.cfg.CA)
	if err != nil {
		return fmt.Errorf("%w: run 'dispatcher setup-ca' and 'dispatcher setup-dispatcher' first (or fix cert, key and ca in %s)", err, c.String("config"))
	}
	eng, err := control.New(control.Options{
		Identity:       id,
		ConnectTimeout: e.cfg.ConnectTimeout.Duration,
		ReadTimeout:    e.cfg.ReadTimeout.Duration,
		Parallel:       e.cfg.Parallel,
		MaxHosts:       e.cfg.MaxHosts,
		PreferRegistry: e.cfg.Resolve == config.ResolveRegistry,
		RunRetention:   e.cfg.RunRetention.Duration,
		Registry:       st,
		Runs:           st,
		Locks:          st,
		Revocations:    st,
		CA:             control.Pair{Cert: e.cfg.CA, Key: e.cfg.CAKey},
		CertDays:       e.cfg.CertDays,
		Authorize:      authHook(e.cfg, e.log),
		Log:            e.log,
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	return f(eng, port, parallel)
}

// authHook returns the dispatcher-side auth hook (SPEC §8), which the
// engine asks before taking locks or contacting agents, with source_ip
// 127.0.0.1. With no auth_hook configured every CLI call is allowed, as the
// Perl dispatcher did (docs/HOOKS.md).
func authHook(cfg *config.Dispatcher, log *zap.Logger) func(context.Context, control.AuthRequest) error {
	if cfg.AuthHook == "" {
		return nil
	}
	return control.HookAuthorizer(&hook.Runner{Path: cfg.AuthHook, Timeout: cfg.HookTimeout.Duration, Log: log}, "127.0.0.1", nil)
}

// newProgress returns the progress line for n hosts: only on a terminal
// and never with --json.
func newProgress(c *cli.Context, n int) *output.Progress {
	return output.NewProgress(c.App.ErrWriter, n, !c.Bool("json") && output.IsTerminal(c.App.ErrWriter))
}

// exitFor turns a finished command into its exit: a write error, exit 1
// without a message when not ok (the output already says why), or nil.
func exitFor(ok bool, writeErr error) error {
	if writeErr != nil {
		return writeErr
	}
	if !ok {
		return cmdutil.Exit(cmdutil.ExitFailure, nil)
	}
	return nil
}

// printRun runs req and prints it: human blocks in the order given as soon
// as every earlier host is done, or --stream lines as they arrive, or the
// JSON report at the end.
func printRun(c *cli.Context, eng *control.Engine, req control.RunRequest) error {
	out := c.App.Writer
	asJSON, stream := c.Bool("json"), c.Bool("stream")
	var progress *output.Progress
	if !stream {
		progress = newProgress(c, len(req.Hosts))
	}
	var writeErr error
	write := func(f func(io.Writer) error) {
		if writeErr == nil {
			writeErr = f(out)
		}
	}

	var flush func() error // what must be written or checked after the run
	switch {
	case asJSON:
		req.OnResult = func(_ int, r store.Result) { progress.Add(r.Exit != 0) }
	case stream:
		s := output.NewStreamer(out)
		var mu sync.Mutex
		streamed := make([]bool, len(req.Hosts))
		req.OnOutput = func(i int, host string, ev wire.StreamEvent) {
			mu.Lock()
			streamed[i] = true
			mu.Unlock()
			s.Write(host, ev.Stream, ev.Bytes())
		}
		req.OnResult = func(i int, r store.Result) {
			mu.Lock()
			seen := streamed[i]
			mu.Unlock()
			if !seen { // an agent that does not stream: its output comes whole
				stdout, stderr := r.Output()
				s.Write(r.Host, "stdout", stdout)
				s.Write(r.Host, "stderr", stderr)
			}
			s.Flush(r.Host)
			s.Locked(func(w io.Writer) {
				write(func(io.Writer) error { return output.WriteRunSummary(w, r) })
			})
		}
		flush = s.Err
	default:
		ready := make(map[int]store.Result)
		next := 0
		req.OnResult = func(i int, r store.Result) {
			progress.Add(r.Exit != 0)
			ready[i] = r
			for {
				r, ok := ready[next]
				if !ok {
					break
				}
				delete(ready, next)
				next++
				progress.Above(func() { write(func(w io.Writer) error { return output.WriteRunResult(w, r) }) })
			}
		}
	}

	req.OnBatch = batchNotice(c, progress)
	progress.Start()
	report, err := eng.Run(c.Context, req)
	progress.Stop()
	if report == nil {
		return err
	}
	if asJSON {
		write(func(w io.Writer) error { return output.WriteJSON(w, report) })
	} else {
		fmt.Fprintf(c.App.ErrWriter, "reqid %s: %s (dispatcher status %s shows it again)\n",
			report.ReqID, output.RunTally(report.Results), report.ReqID)
		if report.Batches != nil && report.Batches.Stopped != "" {
			fmt.Fprintf(c.App.ErrWriter, "stopped early: %s; 'dispatcher run --retry-failed %s' runs the failed hosts again\n",
				report.Batches.Stopped, report.ReqID)
		}
	}
	if flush != nil && writeErr == nil {
		writeErr = flush()
	}
	if err != nil {
		return err // the results are shown, but were not stored
	}
	return exitFor(report.OK, writeErr)
}
