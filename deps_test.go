package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const modulePath = "github.com/dispatcher-dev/dispatcher"

// The layers of DESIGN.md, from the import path below the module root.
func layer(rel string) string {
	switch {
	case rel == "":
		return "main"
	case rel == "roles":
		return "roles"
	case rel == "roles/dispatcher", rel == "roles/agent", rel == "roles/api", rel == "roles/pairing":
		return "role"
	case strings.HasPrefix(rel, "roles/internal/"):
		return "internal"
	case rel == "pki", rel == "pki/pkitest", rel == "wire", rel == "exec", rel == "hook":
		return "core"
	case rel == "packaging":
		return "assets" // embedded files only: units, scripts, examples
	case strings.HasPrefix(rel, "packaging/"):
		return "tool" // build tools (go run ./packaging/…), never in the binary
	case strings.HasPrefix(rel, "internal/"):
		return "testkit" // test support for every layer's tests (internal/pgtest), never in the binary
	case rel == "bench" || strings.HasPrefix(rel, "bench/"):
		return "bench" // the fleet benchmark (make bench), never in the binary
	}
	return "" // unknown: the test says where to declare it
}

// coreAllowed lists, for each core package, the module packages it may import.
var coreAllowed = map[string][]string{
	"pki":         nil,
	"pki/pkitest": {"pki"},
	"wire":        {"pki"},
	"exec":        nil,
	"hook":        {"exec"},
}

// thirdParty lists the modules allowed in non-test code and who may use them.
// A new module needs a line in docs/DEVELOPER.md saying why.
var thirdParty = []struct {
	prefix string
	who    func(rel string) bool
}{
	{"go.uber.org/zap", func(string) bool { return true }},
	{"github.com/urfave/cli/v2", notCore},
	{"github.com/BurntSushi/toml", notCore},
	{"golang.org/x/", notCore},
	{"github.com/jackc/pgx/", func(rel string) bool {
		return strings.HasPrefix(rel, "roles/internal/store/postgres") || rel == "internal/pgtest"
	}},
	{"github.com/prometheus/client_golang/", func(rel string) bool { return rel == "roles/api" }},
}

// testOnly are modules tests may use on top of those above.
var testOnly = []string{"github.com/google/go-cmp/", "github.com/rogpeppe/go-internal/", "github.com/santhosh-tekuri/jsonschema/"}

func notCore(rel string) bool { return layer(rel) != "core" }

type listedPackage struct {
	ImportPath   string
	Standard     bool
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func rel(path string) (string, bool) {
	if path == modulePath {
		return "", true
	}
	r, ok := strings.CutPrefix(path, modulePath+"/")
	return r, ok
}

// TestDependencyRules enforces the dependency rules of DESIGN.md.
func TestDependencyRules(t *testing.T) {
	for _, p := range goList(t, "./...") {
		from, _ := rel(p.ImportPath)
		fromLayer := layer(from)
		if fromLayer == "" {
			t.Errorf("package %q is in no layer of DESIGN.md: add it to layer() in deps_test.go and say why in docs/DEVELOPER.md", p.ImportPath)
			continue
		}
		check := func(imp string, test bool) {
			if isStd(imp) {
				return
			}
			if to, ok := rel(imp); ok {
				if why := internalRule(from, to, test); why != "" {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
				}
				return
			}
			if !allowedThirdParty(from, imp, test) {
				t.Errorf("%s imports %s: not an allowed module for this package (DESIGN.md dependency rules)", p.ImportPath, imp)
			}
		}
		for _, imp := range p.Imports {
			check(imp, false)
		}
		for _, imp := range append(p.TestImports, p.XTestImports...) {
			check(imp, true)
		}
	}
}

// TestBinaryDeps: test-only modules never reach the shipped binary.
func TestBinaryDeps(t *testing.T) {
	for _, p := range goList(t, "-deps", ".") {
		for _, m := range testOnly {
			if strings.HasPrefix(p.ImportPath, m) {
				t.Errorf("the binary links %s, which is for tests only", p.ImportPath)
			}
		}
	}
}

func internalRule(from, to string, test bool) string {
	fl, tl := layer(from), layer(to)
	if from == to {
		return "" // external test package of the same package
	}
	if tl == "testkit" {
		if test || fl == "testkit" || strings.HasSuffix(from, "test") {
			return "" // tests, and test helper packages such as pgtest wrappers
		}
		return "internal/ holds test support: only tests import it"
	}
	switch fl {
	case "main":
		if tl == "roles" || (test && tl == "core") {
			return "" // the e2e harness issues test certificates with pki
		}
		return "main may import only roles"
	case "roles":
		if tl == "role" || tl == "internal" || tl == "core" {
			return ""
		}
	case "role":
		if tl == "internal" || tl == "core" || tl == "assets" {
			return ""
		}
		if tl == "role" {
			return "role packages never import each other; move shared code to roles/internal/"
		}
	case "internal":
		if tl == "internal" || tl == "core" || tl == "assets" {
			return ""
		}
	case "assets":
		return "packaging holds embedded files and imports nothing of the module"
	case "testkit":
		return "test support imports only the standard library and the modules it drives"
	case "bench":
		if tl == "bench" || tl == "role" || tl == "core" || test {
			return ""
		}
		return "the fleet benchmark runs roles (the agent server) and core packages; the rest it drives through the binary"
	case "tool":
		if tl == "assets" || (test && tl != "") {
			return ""
		}
		return "build tools under packaging/ may import only packaging"
	case "core":
		if test && to == "pki/pkitest" {
			return ""
		}
		for _, ok := range coreAllowed[from] {
			if to == ok {
				return ""
			}
		}
		return "core packages import only the standard library, zap and the core packages DESIGN.md allows"
	}
	return "imports point down the layers: main → roles → roles/* → roles/internal/* → {pki, wire, exec, hook}"
}

func allowedThirdParty(from, imp string, test bool) bool {
	for _, m := range thirdParty {
		if strings.HasPrefix(imp, m.prefix) && m.who(from) {
			return true
		}
	}
	if test {
		for _, m := range testOnly {
			if strings.HasPrefix(imp, m) {
				return true
			}
		}
	}
	return false
}

// TestDependencyRulesCatchViolations makes sure the rules above can fail.
func TestDependencyRulesCatchViolations(t *testing.T) {
	for _, c := range []struct{ from, to string }{
		{"", "pki"},
		{"roles/agent", "roles/dispatcher"},
		{"roles/internal/config", "roles/agent"},
		{"roles/internal/config", "roles"},
		{"pki", "wire"},
		{"exec", "hook"},
		{"wire", "roles/internal/config"},
	} {
		if internalRule(c.from, c.to, false) == "" {
			t.Errorf("%q → %q allowed, want refused", c.from, c.to)
		}
	}
	for _, c := range []struct{ from, imp string }{
		{"pki", "github.com/BurntSushi/toml"},
		{"roles/internal/config", "github.com/google/go-cmp/cmp"},
		{"roles/internal/config", "github.com/jackc/pgx/v5"},
		{"exec", "golang.org/x/sys/unix"},
	} {
		if allowedThirdParty(c.from, c.imp, false) {
			t.Errorf("%q importing %q allowed, want refused", c.from, c.imp)
		}
	}
}
