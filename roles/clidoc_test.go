package roles

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/internal/mantest"

	"github.com/dispatcher-dev/dispatcher/roles/internal/clidoc"
)

// roleCommands are commands each role's completion must offer: the real
// names, so a renamed or lost command shows here.
var roleCommands = map[string][]string{
	Dispatcher: {"run", "ping", "discover", "approve", "deny", "list-requests", "setup-ca", "setup-dispatcher", "pairing-mode", "agent", "completion", "version"},
	Agent:      {"serve", "request-pairing", "pairing-status", "self-check", "ping-self", "self-ping", "completion", "version"},
	API:        {"serve", "completion", "version"},
	Pairing:    {"serve", "completion", "version"},
}

// TestCompletion checks that every role's "completion bash" completes that
// role's own commands under its own name, and "completion zsh" is a
// #compdef file for it.
func TestCompletion(t *testing.T) {
	bash, bashErr := exec.LookPath("bash")
	for role, want := range roleCommands {
		name := programName[role]
		t.Run(name, func(t *testing.T) {
			code, script, stderr := runMain(name, "completion", "bash")
			if code != 0 || stderr != "" {
				t.Fatalf("completion bash: exit %d, stderr %q", code, stderr)
			}
			code, zsh, stderr := runMain(name, "completion", "zsh")
			if code != 0 || stderr != "" || !strings.HasPrefix(zsh, "#compdef "+name+"\n") {
				t.Errorf("completion zsh: exit %d, stderr %q, starts %.40q", code, stderr, zsh)
			}
			for _, c := range want {
				if !strings.Contains(zsh, "'"+c+":") {
					t.Errorf("zsh script does not offer %s", c)
				}
			}
			if strings.Contains(zsh, "'man:") || strings.Contains(script, " man ") {
				t.Errorf("the hidden man command is offered")
			}
			if bashErr != nil {
				t.Skip("no bash: the script is not run")
			}
			file := filepath.Join(t.TempDir(), name+".bash")
			if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			fn := "_" + strings.ReplaceAll(name, "-", "_")
			prog := "source " + file + "\ncomplete -p " + name + "\n" +
				"COMP_WORDS=(" + name + " ''); COMP_CWORD=1; " + fn + "\n" +
				`echo "${COMPREPLY[*]}"`
			out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			complete, words, _ := strings.Cut(string(out), "\n")
			if complete != "complete -o default -F "+fn+" "+name {
				t.Errorf("complete -p %s: %q", name, complete)
			}
			offered := map[string]bool{}
			for _, w := range strings.Fields(words) {
				offered[w] = true
			}
			for _, c := range want {
				if !offered[c] {
					t.Errorf("bash completion of %q does not offer %s (offers %s)", name+" ", c, words)
				}
			}
			if offered["man"] || offered["help"] {
				t.Errorf("offers man or help: %s", words)
			}
		})
	}
}

// TestManPages checks every role's man page: the sections, every visible
// command of the role, and that groff and man (where installed) render it
// without a warning.
func TestManPages(t *testing.T) {
	for role := range roleCommands {
		name := programName[role]
		t.Run(name, func(t *testing.T) {
			code, page, stderr := runMain(name, "man", "--date", "2026-11-26")
			if code != 0 || stderr != "" {
				t.Fatalf("man: exit %d, stderr %q", code, stderr)
			}
			for _, sec := range []string{".TH ", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS", ".SH OPTIONS", ".SH FILES", ".SH SEE ALSO"} {
				if !strings.Contains(page, "\n"+sec) {
					t.Errorf("no %s", sec)
				}
			}
			root := clidoc.Walk(NewApp(role, nil, nil, nil))
			if len(root.Subs) < 3 {
				t.Fatalf("only %d commands", len(root.Subs))
			}
			for _, c := range root.Subs {
				if !strings.Contains(page, `.SS "`+strings.ReplaceAll(c.Name, "-", `\-`)) {
					t.Errorf("command %s is not in the page", c.Name)
				}
			}
			for r, n := range programName {
				if r != role && !strings.Contains(page, ".BR "+strings.ReplaceAll(n, "-", `\-`)+" (1)") {
					t.Errorf("SEE ALSO lacks %s(1)", n)
				}
			}
			mantest.CheckRenders(t, page)
		})
	}
}
