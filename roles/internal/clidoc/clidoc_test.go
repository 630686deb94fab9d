package clidoc

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/internal/mantest"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
)

// testApp is a small app with what the generators must handle: aliases,
// nested subcommands, flags with and without values, a placeholder, an
// environment variable, hidden commands and flags, and text that needs
// escaping in roff and zsh.
func testApp() *cli.App {
	app := &cli.App{
		Name:  "prog-x",
		Usage: "do things — safely",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "version", Usage: "print the version"},
		},
		Commands: []*cli.Command{
			{
				Name: "run", Aliases: []string{"r"}, Usage: "run a [script]: on hosts", ArgsUsage: "HOST... [-- ARGS...]",
				Description: ".starts with a dot\nand a back\\slash\n\nsecond paragraph",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Value: "/etc/prog.conf", EnvVars: []string{"PROG_CONFIG"}, Usage: "config to read"},
					&cli.IntFlag{Name: "timeout", Aliases: []string{"t"}, Usage: "wait `SECONDS` at most"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
					&cli.BoolFlag{Name: "secret-flag", Hidden: true},
				},
			},
			{Name: "ping", Usage: "ping hosts", Flags: []cli.Flag{&cli.StringFlag{Name: "config", Value: "/etc/prog.conf", EnvVars: []string{"PROG_CONFIG"}, Usage: "config to read"}}},
			{Name: "status", Usage: "show a run's status", Flags: []cli.Flag{&cli.StringFlag{Name: "config", Value: "/etc/prog.conf", EnvVars: []string{"PROG_CONFIG"}, Usage: "config to read"}}},
			{
				Name: "cert", Usage: "certificate commands", HideHelpCommand: true,
				Subcommands: []*cli.Command{
					{Name: "renew", Usage: "renew it", Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "even when not due"}}},
					{Name: "show", Usage: "show it"},
				},
			},
			{Name: "secret", Usage: "not for users", Hidden: true},
		},
	}
	return app
}

func TestWalk(t *testing.T) {
	root := Walk(testApp())
	var got []string
	visit(root, func(path []string, n *Node) { got = append(got, strings.Join(path, " ")) })
	want := []string{"run", "ping", "status", "cert", "cert renew", "cert show"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	run := root.Subs[0]
	valued, plain := run.flagWords()
	if diff := cmp.Diff([]string{"--config", "--timeout", "-t"}, valued); diff != "" {
		t.Errorf("valued flags of run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"--help", "--json", "-h"}, plain); diff != "" {
		t.Errorf("plain flags of run (-want +got):\n%s", diff)
	}
	if f := run.Flags[1]; f.Value != "SECONDS" || f.Usage != "wait SECONDS at most" {
		t.Errorf("placeholder: value %q usage %q", f.Value, f.Usage)
	}
	if f := run.Flags[0]; f.Default != "/etc/prog.conf" && f.Default != `"/etc/prog.conf"` {
		t.Errorf("default of --config: %q", f.Default)
	}
}

func generate(t *testing.T, gen func(*bytes.Buffer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := gen(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestBash(t *testing.T) {
	script := generate(t, func(b *bytes.Buffer) error { return Bash(b, testApp()) })
	if !strings.Contains(script, "\ncomplete -o default -F _prog_x prog-x\n") {
		t.Fatalf("no complete line for prog-x:\n%s", script)
	}
	if strings.Contains(script, "secret") {
		t.Errorf("hidden command or flag in the script:\n%s", script)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: the script is not run")
	}
	file := filepath.Join(t.TempDir(), "prog-x.bash")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words string // the command line; the last word is completed
		want  string
	}{
		{"prog-x ''", "cert ping r run status"},
		{"prog-x r", "r run"},
		{"prog-x run --", "--config --help --json --timeout"},
		{"prog-x r -", "--config --help --json --timeout -h -t"},
		{"prog-x --version run --j", "--json"},
		{"prog-x run --config ''", ""}, // a value: left to -o default
		{"prog-x run --config=x --j", "--json"},
		{"prog-x cert ''", "renew show"},
		{"prog-x cert renew --f", "--force"},
		{"prog-x cert show --", "--help"},
		{"prog-x ping host ''", ""}, // arguments: file names
		{"prog-x run h -- ''", ""},  // the script's own arguments
		{"prog-x sec", ""},
	} {
		t.Run(tc.words, func(t *testing.T) {
			prog := "source " + file + "\n" +
				"COMP_WORDS=(" + tc.words + "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n" +
				"_prog_x\n" +
				`echo "${COMPREPLY[*]}"`
			out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			words := strings.Fields(string(out))
			sort.Strings(words)
			if got := strings.Join(words, " "); got != tc.want {
				t.Errorf("completions of %q: got %q, want %q", tc.words, got, tc.want)
			}
		})
	}
}

func TestZsh(t *testing.T) {
	script := generate(t, func(b *bytes.Buffer) error { return Zsh(b, testApp()) })
	if !strings.HasPrefix(script, "#compdef prog-x\n") {
		t.Fatalf("does not start with #compdef prog-x:\n%s", script)
	}
	for _, want := range []string{
		`'run:run a [script]: on hosts'`, // _describe: the first colon splits
		`'r:run a [script]: on hosts'`,
		`'renew:renew it'`,
		`'--config=[config to read]:config:_files'`,
		`'(--timeout -t)--timeout=[wait SECONDS at most]:SECONDS:_files'`,
		`'(--timeout -t)-t[wait SECONDS at most]:SECONDS:_files'`,
		"run|r) _prog_x__run && ret=0 ;;",
		"cert) _prog_x__cert && ret=0 ;;",
		"renew) _prog_x__cert__renew && ret=0 ;;",
		"_prog_x__cert__show() {",
		"compdef _prog_x prog-x",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("zsh script lacks %s", want)
		}
	}
	if strings.Contains(script, "secret") {
		t.Errorf("hidden command or flag in the script")
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command(zsh, "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	// The usage text of the escaping test comes out escaped.
	spec := zshFlagSpecs(Flag{Names: []string{"x"}, Usage: "a [b]: c's"})
	if diff := cmp.Diff([]string{`'-x[a \[b\]\: c'\''s]'`}, spec); diff != "" {
		t.Errorf("escaping (-want +got):\n%s", diff)
	}
}

func TestMan(t *testing.T) {
	page := generate(t, func(b *bytes.Buffer) error {
		return Man(b, testApp(), ManOptions{
			Date: "2026-11-26", Source: "prog 1.0",
			Files:   []ManFile{{Path: "/etc/prog.conf", Text: "configuration"}},
			SeeAlso: []string{"prog-agent(1)", "prog-api(1)"},
		})
	})
	// The sections, in order.
	last := -1
	for _, sec := range []string{`.TH "PROG\-X" "1" "2026\-11\-26" "prog 1.0" "User Commands"`, ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS", ".SH OPTIONS", ".SH FILES", ".SH SEE ALSO"} {
		i := strings.Index(page, "\n"+sec+"\n")
		if i < 0 {
			t.Fatalf("no line %q in:\n%s", sec, page)
		}
		if i < last {
			t.Errorf("%s out of order", sec)
		}
		last = i
	}
	for _, want := range []string{
		"prog\\-x \\- do things \\[u2014] safely\n",
		`.SS "run HOST... [\-\- ARGS...]"`,
		"Also: \\fBr\\fR.",
		"\\&.starts with a dot and a back\\eslash\n.PP\nsecond paragraph\n",
		`.SS "cert renew"`,
		`.SS "cert show"`,
		"\\fB\\-\\-timeout\\fR, \\fB\\-t\\fR \\fISECONDS\\fR\nwait SECONDS at most.\n",
		// --config is taken by three commands: listed once under OPTIONS.
		"Common options (see \\fBOPTIONS\\fR): \\fB\\-\\-config\\fR.",
		"config to read (default: /etc/prog.conf; environment: PROG_CONFIG).",
		".BR prog\\-agent (1) ,\n.BR prog\\-api (1)\n",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if strings.Contains(page, "secret") {
		t.Errorf("hidden command or flag in the page")
	}
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "'") || strings.Contains(line, "—") {
			t.Errorf("unescaped line %q", line)
		}
	}
	mantest.CheckRenders(t, page)
}

func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "plain",
		"a-b":        `a\-b`,
		`back\slash`: `back\eslash`,
		".dot":       `\&.dot`,
		"'quote":     `\&'quote`,
		"in.the'mid": "in.the'mid",
		"é…":         `\[u00E9]\[u2026]`,
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
	if got := roffArg(`say "hi"`); got != `"say \(dqhi\(dq"` {
		t.Errorf("roffArg: %q", got)
	}
}

// TestCommands runs the completion and man commands as part of an app.
func TestCommands(t *testing.T) {
	run := func(args ...string) (string, error) {
		app := testApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		app.ExitErrHandler = func(*cli.Context, error) {}
		app.Commands = append(app.Commands, Commands(func(*cli.App) ManOptions { return ManOptions{Source: "prog 2.0"} })...)
		err := app.Run(append([]string{"prog-x"}, args...))
		return out.String(), err
	}
	out, err := run("completion", "bash")
	if err != nil || !strings.Contains(out, "complete -o default -F _prog_x prog-x") || !strings.Contains(out, "completion") {
		t.Errorf("completion bash: %v\n%s", err, out)
	}
	if out, err := run("completion", "zsh"); err != nil || !strings.HasPrefix(out, "#compdef prog-x\n") {
		t.Errorf("completion zsh: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"man", "extra"}} {
		_, err := run(args...)
		var ee *cmdutil.ExitError
		if !errors.As(err, &ee) || ee.Code != cmdutil.ExitUsage {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
	out, err = run("man", "--date", "2027-01-02")
	if err != nil || !strings.Contains(out, `"2027\-01\-02" "prog 2.0"`) || !strings.Contains(out, `.SS "completion bash"`) {
		t.Errorf("man: %v\n%s", err, out)
	}
	if strings.Contains(out, `.SS "man"`) {
		t.Errorf("the hidden man command is in its own page")
	}
}
