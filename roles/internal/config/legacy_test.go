package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLegacy(t *testing.T) {
	got, err := parseLegacy([]byte("\xef\xbb\xbf# header comment\r\n" +
		"hostname = web-01\r\n" +
		"  script_dirs=/opt/scripts:/usr/local/scripts  # dirs\n" +
		"empty =\n" +
		"hash = a#b\n" +
		"url = http://x/?a=b\n" +
		"\n" +
		"[tags] # section comment\n" +
		"env = prod\t# tab comment\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []legacyEntry{
		{Line: 2, Key: "hostname", Value: "web-01"},
		{Line: 3, Key: "script_dirs", Value: "/opt/scripts:/usr/local/scripts"},
		{Line: 4, Key: "empty", Value: ""},
		{Line: 5, Key: "hash", Value: "a#b"},
		{Line: 6, Key: "url", Value: "http://x/?a=b"},
		{Line: 8, Section: "tags"},
		{Line: 9, Section: "tags", Key: "env", Value: "prod"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseLegacyErrors(t *testing.T) {
	for in, want := range map[string]string{
		"a = 1\nno equals sign\n": `line 2: expected key = value, [section] or # comment, got "no equals sign"`,
		"[tags\n":                 `line 1: bad section header "[tags": want [name] with letters, digits, '_', '.' or '-'`,
		"[]\n":                    `line 1: bad section header "[]": want [name] with letters, digits, '_', '.' or '-'`,
		"my key = 1\n":            `line 1: bad key "my key": keys are letters, digits, '_', '.' or '-'`,
		" = 1\n":                  `line 1: bad key "": keys are letters, digits, '_', '.' or '-'`,
	} {
		_, err := parseLegacy([]byte(in))
		if errText(err) != want {
			t.Errorf("parseLegacy(%q) = %v, want %s", in, err, want)
		}
	}
}

func TestLooksLikeTOML(t *testing.T) {
	for in, want := range map[string]bool{
		"hostname = web-01\n[tags]\nenv = prod\n": false,
		"a = b # \"quoted\" in a comment\n":       false,
		"hostname = \"web-01\"\nport = 7443x\n":   true,
		"dirs = ['/a']\nx = y\n":                  true,
		"t = {a = 1}\nx = y\n":                    true,
		"[[servers]]\nx = y\n":                    true,
		"list = [\n  \"a\",\n]\nx = y\n":          true,
		"\"quoted key\" = 1\nx = y\n":             true,
	} {
		if got := looksLikeTOML([]byte(in)); got != want {
			t.Errorf("looksLikeTOML(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFormatLegacyRoundTrip(t *testing.T) {
	in := []legacyEntry{
		{Key: "a", Value: "1"},
		{Key: "b", Value: "#not a comment"},
		{Key: "c", Value: ""},
		{Section: "tags"},
		{Section: "tags", Key: "env", Value: "x = y"},
	}
	got, err := parseLegacy(formatLegacy(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got, ignoreLine); diff != "" {
		t.Errorf("(-want +got):\n%s\n%s", diff, formatLegacy(in))
	}
}

var ignoreLine = cmp.Transformer("noLine", func(e legacyEntry) legacyEntry { e.Line = 0; return e })

func TestKeyLines(t *testing.T) {
	src := `# comment
a = 1
"quoted key" = "x"   # trailing
dotted.key = 'y'
multi = """
line
line"""
lit = '''
x'''
arr = [
  1, # comment ] inside
  "]",
]
inline = { x = 1, y = [2] }
after = true

[tbl]
k = "v"
[tbl.sub]
z = 0
[[arr2]]
q = 1
[ "quoted" . 'hdr' ]
w = 2
escaped = "a\"b"
next = 3
`
	want := map[string]int{
		"a": 2, "quoted key": 3, "dotted": 4, "dotted.key": 4, "multi": 5, "lit": 8,
		"arr": 10, "inline": 14, "after": 15, "tbl": 17, "tbl.k": 18, "tbl.sub": 19,
		"tbl.sub.z": 20, "arr2": 21, "arr2.q": 22, "quoted": 23, "quoted.hdr": 23,
		"quoted.hdr.w": 24, "quoted.hdr.escaped": 25, "quoted.hdr.next": 26,
	}
	if diff := cmp.Diff(want, keyLines(src)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
