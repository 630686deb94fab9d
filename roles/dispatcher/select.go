package dispatcher

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
)

// tagFlags are the options that filter registered agents by their tags.
func tagFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "tag", Usage: "agents whose tag KEY is VALUE: key=value, key=v1,v2 (any of them) or key (set at all); repeat for all of several"},
		&cli.StringSliceFlag{Name: "not-tag", Usage: "leave out agents whose tags match (same forms as --tag; repeatable)"},
	}
}

// selectionFlags are the options that pick hosts beside naming them.
func selectionFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.BoolFlag{Name: "all", Usage: "every registered agent (narrow it with --not-tag)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the hosts selected (and the batches) and exit without contacting any"},
	}, tagFlags()...)
}

// rolloutFlags are the options of a run or ping made batch after batch.
func rolloutFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "batch", Usage: "hosts per batch, N or N% of the hosts selected; the next batch starts when one is done"},
		&cli.StringFlag{Name: "batch-wait", Usage: "pause between batches: seconds or a duration like 30s"},
		&cli.StringFlag{Name: "max-failures", Usage: "start no further batch once more than N (or N%) hosts have failed; the rest are reported not attempted"},
		&cli.BoolFlag{Name: "fail-fast", Usage: "start no further host once one has failed (hosts in flight finish)"},
	}
}

// selecting reports whether the command line selects agents by tags.
func selecting(c *cli.Context) bool {
	return c.Bool("all") || len(c.StringSlice("tag")) > 0 || len(c.StringSlice("not-tag")) > 0
}

// selectionOf reads the selection options around the named hosts.
func selectionOf(c *cli.Context, hosts []string) (control.Selection, error) {
	s := control.Selection{Hosts: hosts, All: c.Bool("all")}
	var err error
	if s.Tags, err = control.ParseTagMatches(c.StringSlice("tag")); err != nil {
		return s, cmdutil.Usagef("--tag %v", err)
	}
	if s.NotTags, err = control.ParseTagMatches(c.StringSlice("not-tag")); err != nil {
		return s, cmdutil.Usagef("--not-tag %v", err)
	}
	return s, nil
}

// rolloutOf reads the rollout options.
func rolloutOf(c *cli.Context) (control.Rollout, error) {
	var r control.Rollout
	if v := c.String("batch"); v != "" {
		a, err := control.ParseAmount(v)
		if err != nil {
			return r, cmdutil.Usagef("--batch %v", err)
		}
		r.Batch = &a
	}
	if v := c.String("max-failures"); v != "" {
		a, err := control.ParseAmount(v)
		if err != nil {
			return r, cmdutil.Usagef("--max-failures %v", err)
		}
		r.MaxFailures = &a
	}
	if v := c.String("batch-wait"); v != "" {
		d, err := config.ParseDuration(v)
		if err != nil || d < 0 {
			return r, cmdutil.Usagef("--batch-wait %q: want a number of seconds or a duration like 30s", v)
		}
		r.BatchWait = d
	}
	r.FailFast = c.Bool("fail-fast")
	if err := r.CheckAs(flagName); err != nil {
		return r, cmdutil.Usagef("%v", err)
	}
	return r, nil
}

// flagName is the command line's name of a request field: batch_wait is
// --batch-wait.
func flagName(field string) string { return "--" + strings.ReplaceAll(field, "_", "-") }

// selectHosts resolves the selection to the host list, as a usage error
// when it is empty or contradictory.
func selectHosts(eng *control.Engine, sel control.Selection) ([]string, error) {
	hosts, err := eng.Select(sel)
	if err != nil {
		return nil, cmdutil.Usagef("%v", err)
	}
	return hosts, nil
}

// dryRunJSON is what --dry-run --json prints.
type dryRunJSON struct {
	OK      bool       `json:"ok"`
	DryRun  bool       `json:"dry_run"`
	Hosts   []string   `json:"hosts"`
	Batches [][]string `json:"batches,omitempty"`
	Script  string     `json:"script,omitempty"`
	Args    []string   `json:"args,omitempty"`
	RetryOf string     `json:"retry_of,omitempty"`
}

// printDryRun prints the hosts a command would contact, one per line (or
// as JSON), and a summary on stderr.
func printDryRun(c *cli.Context, d dryRunJSON, ro control.Rollout) error {
	d.OK, d.DryRun = true, true
	if ro.Batch != nil {
		d.Batches = ro.Batches(d.Hosts)
	}
	if c.Bool("json") {
		return output.WriteJSON(c.App.Writer, d)
	}
	var b strings.Builder
	for _, h := range d.Hosts {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	if _, err := fmt.Fprint(c.App.Writer, b.String()); err != nil {
		return err
	}
	summary := fmt.Sprintf("%d hosts selected", len(d.Hosts))
	if len(d.Batches) > 0 {
		summary += fmt.Sprintf(", in %d batches of %d", len(d.Batches), len(d.Batches[0]))
	}
	_, err := fmt.Fprintf(c.App.ErrWriter, "%s (--dry-run: nothing was contacted)\n", summary)
	return err
}
