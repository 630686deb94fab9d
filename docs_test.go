package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles"
)

// testedMarker, alone on a line, marks the fenced code block that follows
// it in README.md or docs/*.md as one TestDocs checks.
const testedMarker = "<!-- tested -->"

// docBlock is one marked code block.
type docBlock struct {
	file string
	line int // of the opening fence
	lang string
	body string
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// TestDocs checks the examples of the documentation that are marked with
// <!-- tested -->: a ```toml block must load with the real configuration
// loader without an error or a warning (unknown key, legacy format), as the
// file its first line names (# dispatcher.conf, # agent.conf,
// # scripts.conf) or, without such a line, as one of them; a ```sh block
// must exit 0 under sh -e in an empty directory, with the binary on PATH
// under every role name. Finding no marked block fails: a lost marker must
// not turn the test into a no-op.
func TestDocs(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"README.md"}, files...)
	var blocks []docBlock
	for _, f := range files {
		bs, err := testedBlocks(f)
		if err != nil {
			t.Error(err)
			continue
		}
		blocks = append(blocks, bs...)
	}
	kinds := map[string]int{}
	for _, b := range blocks {
		kinds[b.lang]++
	}
	if kinds["toml"] == 0 || kinds["sh"] == 0 {
		t.Fatalf("found %d toml and %d sh blocks marked %s in README.md and docs/*.md; want some of each", kinds["toml"], kinds["sh"], testedMarker)
	}
	var bin string // the role names' directory, made on first use
	for _, b := range blocks {
		t.Run(b.String(), func(t *testing.T) {
			switch b.lang {
			case "toml":
				checkTOMLBlock(t, b)
			case "sh":
				if bin == "" {
					bin = roleBinDir(t)
				}
				runShellBlock(t, b, bin)
			}
		})
	}
}

// testedBlocks returns the marked blocks of one Markdown file. A marker
// not followed by a toml or sh block is an error.
func testedBlocks(file string) ([]docBlock, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		blocks []docBlock
		cur    *docBlock
		marked bool
		fence  bool // inside an unmarked block
		n      int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil:
			if trimmed == "```" {
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
			cur.body += line + "\n"
		case fence:
			if strings.HasPrefix(trimmed, "```") {
				fence = false
			}
		case marked:
			if trimmed == "" {
				continue
			}
			lang, ok := strings.CutPrefix(trimmed, "```")
			if !ok || (lang != "toml" && lang != "sh") {
				return nil, fmt.Errorf("%s:%d: %s must be followed by a ```toml or ```sh block, not %q", file, n, testedMarker, trimmed)
			}
			cur = &docBlock{file: file, line: n, lang: lang}
			marked = false
		case trimmed == testedMarker:
			marked = true
		case strings.HasPrefix(trimmed, "```"):
			fence = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil || marked {
		return nil, fmt.Errorf("%s: a tested block is not closed", file)
	}
	return blocks, nil
}

var confKind = regexp.MustCompile(`^#\s*(dispatcher\.conf|agent\.conf|scripts\.conf)\b`)

// checkTOMLBlock loads the block with the loader of its kind.
func checkTOMLBlock(t *testing.T, b docBlock) {
	kinds := []string{roles.DispatcherConf, roles.AgentConf, roles.ScriptsConf}
	if m := confKind.FindStringSubmatch(b.body); m != nil {
		kinds = []string{m[1]}
	}
	var problems []string
	for _, kind := range kinds {
		path := filepath.Join(t.TempDir(), kind)
		if err := os.WriteFile(path, []byte(b.body), 0o644); err != nil {
			t.Fatal(err)
		}
		warnings, err := roles.CheckConfig(kind, path)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("as %s: %v", kind, err))
		case len(warnings) > 0:
			problems = append(problems, fmt.Sprintf("as %s: %s", kind, strings.Join(warnings, "; ")))
		default:
			return // loads cleanly
		}
	}
	t.Errorf("%s does not load cleanly (name the file on its first line, e.g. # agent.conf):\n%s\n%s", b, strings.Join(problems, "\n"), b.body)
}

// roleBinDir returns a directory with the test binary under every role
// name; TestMain runs it as the real binary when started under one.
func roleBinDir(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range roleNames {
		if err := os.Symlink(exe, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runShellBlock runs the block with sh -e in an empty directory that is
// also HOME. As in the scripts, a command that forgets --config fails
// instead of reading /etc.
func runShellBlock(t *testing.T, b docBlock, bin string) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-e", "-c", b.body)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+dir,
		"USER=tester",
		"DISPATCHER_CONFIG="+filepath.Join(dir, "no-config-given.conf"),
		"DISPATCHER_TOKEN=",
	)
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("%s did not finish in 30s:\n%s", b, out)
	}
	if err != nil {
		t.Errorf("%s: sh -e: %v\n--- block\n%s--- output\n%s", b, err, b.body, out)
	}
}

// TestDocsMarkers checks the block finder itself: a marker must be
// followed by a toml or sh block, and unmarked blocks are ignored.
func TestDocsMarkers(t *testing.T) {
	for _, tc := range []struct {
		md     string
		blocks int
		bad    bool
	}{
		{"text\n```sh\nfalse\n```\n", 0, false},
		{testedMarker + "\n\n```sh\ntrue\n```\n```toml\nx = 1\n```\n", 1, false},
		{"```\n" + testedMarker + "\n```\n" + testedMarker + "\n```toml\n# agent.conf\n```\n", 1, false},
		{testedMarker + "\n```text\nhi\n```\n", 0, true},
		{testedMarker + "\nprose\n", 0, true},
		{testedMarker + "\n```sh\ntrue\n", 0, true},
	} {
		file := filepath.Join(t.TempDir(), "x.md")
		if err := os.WriteFile(file, []byte(tc.md), 0o644); err != nil {
			t.Fatal(err)
		}
		blocks, err := testedBlocks(file)
		if (err != nil) != tc.bad || len(blocks) != tc.blocks {
			t.Errorf("%q: %d blocks, error %v; want %d blocks, error %t", tc.md, len(blocks), err, tc.blocks, tc.bad)
		}
	}
}
