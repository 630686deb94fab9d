package clidoc

import (
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Node is one command of the tree: the app itself at the root.
type Node struct {
	Name        string   // command name; the program name at the root
	Aliases     []string // other names of the command
	Usage       string   // one-line summary
	ArgsUsage   string   // e.g. "HOST... [-- ARGS...]"
	Description string   // longer text, may span lines
	Flags       []Flag   // visible flags, without --help
	Help        bool     // --help/-h is accepted
	Subs        []*Node  // visible subcommands, in definition order
}

// Flag is one visible flag.
type Flag struct {
	Names      []string // primary name first
	Usage      string   // placeholder backticks removed
	Value      string   // the value's name from `BACKTICKS` in the usage; "" when none
	TakesValue bool
	Default    string   // default value text; "" when none worth showing
	EnvVars    []string // environment variables that set it
}

// Spellings returns the flag as typed: --name, or -n for one letter.
func (f Flag) Spellings() []string {
	out := make([]string, 0, len(f.Names))
	for _, n := range f.Names {
		if len(n) == 1 {
			out = append(out, "-"+n)
		} else {
			out = append(out, "--"+n)
		}
	}
	return out
}

// Names returns the node's name followed by its aliases.
func (n *Node) Names() []string { return append([]string{n.Name}, n.Aliases...) }

// Walk builds the tree of app. Hidden commands and flags, the help command
// and the help flag are left out (Help records whether --help is taken).
// It does not call app.Setup and works before or after Run.
func Walk(app *cli.App) *Node {
	root := &Node{
		Name:        app.Name,
		Usage:       app.Usage,
		ArgsUsage:   app.ArgsUsage,
		Description: app.Description,
		Flags:       flags(app.Flags),
		Help:        !app.HideHelp,
	}
	root.Subs = commands(app.Commands)
	return root
}

func commands(cmds []*cli.Command) []*Node {
	var out []*Node
	for _, c := range cmds {
		if c == nil || c.Hidden || c.Name == "help" {
			continue
		}
		out = append(out, &Node{
			Name:        c.Name,
			Aliases:     append([]string(nil), c.Aliases...),
			Usage:       c.Usage,
			ArgsUsage:   c.ArgsUsage,
			Description: c.Description,
			Flags:       flags(c.Flags),
			Help:        !c.HideHelp,
			Subs:        commands(c.Subcommands),
		})
	}
	return out
}

func flags(fs []cli.Flag) []Flag {
	var out []Flag
	for _, f := range fs {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		names := f.Names()
		if len(names) == 0 || names[0] == "help" {
			continue
		}
		fl := Flag{Names: append([]string(nil), names...)}
		if d, ok := f.(cli.DocGenerationFlag); ok {
			fl.Usage, fl.Value = placeholder(d.GetUsage())
			fl.TakesValue = d.TakesValue()
			fl.EnvVars = d.GetEnvVars()
			if fl.TakesValue {
				fl.Default = d.GetDefaultText()
				if fl.Default == "" {
					fl.Default = d.GetValue()
				}
				if fl.Default == `""` || fl.Default == "0" || fl.Default == "[]" {
					fl.Default = ""
				}
			}
		}
		out = append(out, fl)
	}
	return out
}

// commandWords returns the names and aliases of n's subcommands, sorted.
func (n *Node) commandWords() []string {
	var w []string
	for _, s := range n.Subs {
		w = append(w, s.Names()...)
	}
	sort.Strings(w)
	return w
}

// flagWords returns n's flag spellings: those that take a value and those
// that do not, each sorted. --help and -h are among the latter when taken.
func (n *Node) flagWords() (valued, plain []string) {
	for _, f := range n.Flags {
		if f.TakesValue {
			valued = append(valued, f.Spellings()...)
		} else {
			plain = append(plain, f.Spellings()...)
		}
	}
	if n.Help {
		plain = append(plain, "--help", "-h")
	}
	sort.Strings(valued)
	sort.Strings(plain)
	return valued, plain
}

// visit calls fn for every node below root (not root itself) with the
// names leading to it from root, depth first in definition order.
func visit(root *Node, fn func(path []string, n *Node)) {
	var rec func(path []string, n *Node)
	rec = func(path []string, n *Node) {
		for _, s := range n.Subs {
			p := append(append([]string(nil), path...), s.Name)
			fn(p, s)
			rec(p, s)
		}
	}
	rec(nil, root)
}

// identifier turns a program name into a shell function name part.
func identifier(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// placeholder splits a urfave usage string: the first `quoted` word names
// the value (and loses its backticks).
func placeholder(usage string) (string, string) {
	i := strings.IndexByte(usage, '`')
	if i < 0 {
		return usage, ""
	}
	j := strings.IndexByte(usage[i+1:], '`')
	if j < 0 {
		return usage, ""
	}
	name := usage[i+1 : i+1+j]
	return usage[:i] + name + usage[i+1+j+1:], name
}
