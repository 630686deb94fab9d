package cmdutil

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func testApp() *cli.App {
	global := []cli.Flag{
		&cli.StringFlag{Name: "config"},
		&cli.BoolFlag{Name: "json"},
		&cli.IntFlag{Name: "port", Aliases: []string{"p"}},
	}
	return &cli.App{
		Flags: []cli.Flag{&cli.BoolFlag{Name: "version"}},
		Commands: []*cli.Command{
			{Name: "run", Flags: append([]cli.Flag{&cli.DurationFlag{Name: "timeout"}}, global...)},
			{Name: "agent", SkipFlagParsing: true},
			{Name: "store", Flags: global, Subcommands: []*cli.Command{
				{Name: "migrate", Flags: append([]cli.Flag{&cli.BoolFlag{Name: "dry-run"}}, global...)},
			}},
		},
	}
}

func TestPermute(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []string
		want []string
	}{
		{"options after arguments", []string{"run", "web-01", "deploy", "--json"}, []string{"run", "--json", "web-01", "deploy"}},
		{"options before the command", []string{"--json", "run", "web-01", "deploy"}, []string{"run", "--json", "web-01", "deploy"}},
		{"value option after arguments", []string{"run", "web-01", "deploy", "--timeout", "5s"}, []string{"run", "--timeout", "5s", "web-01", "deploy"}},
		{"value option before the command", []string{"--config", "x.conf", "run", "h", "s"}, []string{"run", "--config", "x.conf", "h", "s"}},
		{"value with equals", []string{"run", "h", "--config=x.conf", "s"}, []string{"run", "--config=x.conf", "h", "s"}},
		{"short alias takes a value", []string{"run", "h", "-p", "8443", "s"}, []string{"run", "-p", "8443", "h", "s"}},
		{"value that looks like an option", []string{"run", "h", "s", "--config", "--json"}, []string{"run", "--config", "--json", "h", "s"}},
		{"script arguments after -- untouched", []string{"run", "h", "s", "--json", "--", "--json", "-x", "a b"}, []string{"run", "--json", "h", "s", "--", "--json", "-x", "a b"}},
		{"-- right after the options stays visible", []string{"run", "--json", "--", "-x"}, []string{"run", "--json", "--", "--", "-x"}},
		{"unknown option moved so the command reports it", []string{"run", "h", "--bogus"}, []string{"run", "--bogus", "h"}},
		{"subcommand", []string{"store", "migrate", "--dry-run", "x", "--json"}, []string{"store", "migrate", "--dry-run", "--json", "x"}},
		{"option between command and subcommand", []string{"store", "--json", "migrate"}, []string{"store", "migrate", "--json"}},
		{"delegation passes its arguments as given", []string{"agent", "serve", "--config", "a.conf"}, []string{"agent", "serve", "--config", "a.conf"}},
		{"unknown command left alone", []string{"frob", "--json"}, []string{"frob", "--json"}},
		{"no command", []string{"--version"}, []string{"--version"}},
		{"empty", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Permute(testApp(), c.in)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("Permute(%q) (-want +got):\n%s", c.in, d)
			}
		})
	}
}

func TestPermuteThenParse(t *testing.T) {
	// The permuted arguments parse to what the user meant.
	var gotJSON bool
	var gotArgs []string
	app := testApp()
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.Commands[0].Action = func(c *cli.Context) error {
		gotJSON = c.Bool("json")
		gotArgs = c.Args().Slice()
		return nil
	}
	args := []string{"run", "web-01", "deploy", "--json", "--", "--json", "x"}
	if err := app.Run(append([]string{"dispatcher"}, Permute(app, args)...)); err != nil {
		t.Fatal(err)
	}
	if !gotJSON {
		t.Error("--json after the arguments was not seen")
	}
	if d := cmp.Diff([]string{"web-01", "deploy", "--", "--json", "x"}, gotArgs); d != "" {
		t.Errorf("arguments (-want +got):\n%s", d)
	}
}

func TestCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{Exit(3, nil), 3},
		{Usagef("bad %s", "flag"), 2},
		{errString("plain"), 1},
	} {
		if got := Code(c.err); got != c.want {
			t.Errorf("Code(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
