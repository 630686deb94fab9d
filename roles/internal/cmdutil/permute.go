package cmdutil

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Permute reorders args (without the program name) so that options given
// after a command's arguments reach the command: every option found before
// a "--" is moved to just after the command name (or the deepest subcommand
// name), positional arguments keep their order, and "--" with everything
// after it is left untouched for the script.
//
//	run web-01 deploy --json -- -x   →   run --json web-01 deploy -- -x
//	--json run web-01 deploy         →   run --json web-01 deploy
//
// Options before the command name are moved too, so global options may come
// first as well. Commands with SkipFlagParsing (role delegation) receive their
// arguments as given. Unknown options are moved like known ones so that the
// command reports them. Without a recognisable command, args are returned
// unchanged and the application reports the problem.
func Permute(app *cli.App, args []string) []string {
	path, cmd := findCommand(app, args)
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	valued := valueFlags(cmd.Flags)
	var opts, pos []string
	isCmdName := make(map[int]bool, len(path))
	for _, i := range path {
		isCmdName[i] = true
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if isCmdName[i] {
			continue
		}
		if isOption(a) {
			opts = append(opts, a)
			if takesSeparateValue(a, valued) && i+1 < len(args) {
				i++
				opts = append(opts, args[i])
			}
			continue
		}
		pos = append(pos, a)
	}
	out := make([]string, 0, len(args))
	for _, idx := range path {
		out = append(out, args[idx])
	}
	out = append(out, opts...)
	out = append(out, pos...)
	if i < len(args) {
		if len(pos) == 0 {
			// Keep "--" visible to the command even when no positional
			// argument precedes it: the flag parser would swallow a leading
			// "--" that directly follows the options.
			out = append(out, "--")
		}
		out = append(out, args[i:]...)
	}
	return out
}

// findCommand walks args like the application would and returns the indexes
// of the command names (command, subcommand, …) and the deepest command.
func findCommand(app *cli.App, args []string) ([]int, *cli.Command) {
	cmds := app.Commands
	// Before the command is known, an option's kind comes from any command:
	// global options are shared by all of them.
	valued := valueFlags(app.Flags)
	for _, c := range cmds {
		valued = mergeValued(valued, c.Flags)
	}
	var path []int
	var found *cli.Command
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if isOption(a) {
			if found != nil {
				valued = mergeValued(valued, found.Flags)
			}
			if takesSeparateValue(a, valued) {
				i++
			}
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
				break
			}
		}
		if next == nil {
			if found == nil {
				return nil, nil // unknown command: let the app say so
			}
			break // first positional argument of found
		}
		path = append(path, i)
		found = next
		if next.SkipFlagParsing || len(next.Subcommands) == 0 {
			break
		}
		valued = mergeValued(valued, next.Flags)
		cmds = next.Subcommands
	}
	return path, found
}

func isOption(a string) bool { return len(a) > 1 && a[0] == '-' }

// takesSeparateValue reports whether option a ("--name" or "-n") is one
// whose value is the next argument ("--name=value" carries its own).
func takesSeparateValue(a string, valued map[string]bool) bool {
	if strings.Contains(a, "=") {
		return false
	}
	return valued[strings.TrimLeft(a, "-")]
}

func valueFlags(flags []cli.Flag) map[string]bool {
	return mergeValued(nil, flags)
}

func mergeValued(m map[string]bool, flags []cli.Flag) map[string]bool {
	out := make(map[string]bool, len(m)+len(flags))
	for k, v := range m {
		out[k] = v
	}
	for _, f := range flags {
		takes := false
		if df, ok := f.(cli.DocGenerationFlag); ok {
			takes = df.TakesValue()
		}
		for _, n := range f.Names() {
			out[n] = takes
		}
	}
	return out
}
