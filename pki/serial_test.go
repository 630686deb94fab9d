package pki_test

import (
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func hexInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic(s)
	}
	return n
}

func decInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

// serialStrings shows serials as hex for readable diffs.
func serialStrings(ns []*big.Int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, pki.FormatSerial(n))
	}
	return out
}

func TestParseSerial(t *testing.T) {
	max40 := strings.Repeat("ff", 40)
	tests := []struct {
		in      string
		want    []*big.Int
		wantErr string
	}{
		{in: "0a1b", want: []*big.Int{hexInt("a1b")}},
		{in: "0A1B", want: []*big.Int{hexInt("a1b")}},
		{in: "a1b", want: []*big.Int{hexInt("a1b")}},
		{in: "0A:1B", want: []*big.Int{hexInt("a1b")}},
		{in: "0a:1b", want: []*big.Int{hexInt("a1b")}},
		{in: "a:1b", want: []*big.Int{hexInt("a1b")}},
		{in: "10:20", want: []*big.Int{hexInt("1020")}},
		{in: "0x0a1b", want: []*big.Int{hexInt("a1b")}},
		{in: "0X0A1B", want: []*big.Int{hexInt("a1b")}},
		{in: "0x10", want: []*big.Int{hexInt("10")}},
		{in: "serial=0A1B", want: []*big.Int{hexInt("a1b")}},
		{in: "SERIAL=0A1B\n", want: []*big.Int{hexInt("a1b")}},
		{in: "serial=10", want: []*big.Int{hexInt("10")}},
		{in: "2587 (0xa1b)", want: []*big.Int{decInt("2587")}},
		{in: "10 (0xa)", want: []*big.Int{decInt("10")}},
		{in: "  4096 (0x1000)  ", want: []*big.Int{hexInt("1000")}},
		{in: "deadbeef", want: []*big.Int{hexInt("deadbeef")}},
		{in: "  \t0a1b \r", want: []*big.Int{hexInt("a1b")}},
		// Only decimal digits: hex first, then decimal.
		{in: "10", want: []*big.Int{hexInt("10"), decInt("10")}},
		{in: "1234567890", want: []*big.Int{hexInt("1234567890"), decInt("1234567890")}},
		{in: "0010", want: []*big.Int{hexInt("10"), decInt("10")}},
		// ... unless both readings are the same value.
		{in: "7", want: []*big.Int{big.NewInt(7)}},
		{in: "0", want: []*big.Int{big.NewInt(0)}},
		{in: "09", want: []*big.Int{big.NewInt(9)}},
		// ... or the hex reading is too large.
		{in: "1" + strings.Repeat("0", 80), want: []*big.Int{decInt("1" + strings.Repeat("0", 80))}},
		{in: max40, want: []*big.Int{hexInt(max40)}},
		{in: "0x" + strings.Repeat("0", 100) + "1", want: []*big.Int{big.NewInt(1)}},

		{in: "", wantErr: "serial is empty"},
		{in: "  \t ", wantErr: "serial is empty"},
		{in: "0x", wantErr: `serial "0x" has no digits`},
		{in: "serial=", wantErr: `serial "serial=" has no digits`},
		{in: "0xg1", wantErr: `serial "0xg1" contains 'g', which is not a hex digit`},
		{in: "a b", wantErr: `contains ' ', which is not a hex digit`},
		{in: "zz", wantErr: `contains 'z'`},
		{in: "ｆｆ", wantErr: `contains 'ｆ'`},
		{in: "0a::1b", wantErr: "one or two digits between colons"},
		{in: "0a1b:", wantErr: "one or two digits between colons"},
		{in: "abc:1", wantErr: "one or two digits between colons"},
		{in: "12 (0xd)", wantErr: "the decimal and hex parts differ"},
		{in: "12 (0xc", wantErr: `expected the openssl form "DECIMAL (0xHEX)"`},
		{in: "(0xc)", wantErr: `expected the openssl form`},
		{in: "-1 (-0x1)", wantErr: "is negative"},
		{in: "-0a", wantErr: "is negative"},
		{in: max40 + "ff", wantErr: "is 41 bytes; the limit is 40"},
		{in: "9" + strings.Repeat("9", 96), wantErr: "the limit is 40"},
		{in: strings.Repeat("0", 257), wantErr: "serial is 257 characters long; the limit is 256"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := pki.ParseSerial(tt.in)
			wantErrContains(t, err, tt.wantErr)
			if d := cmp.Diff(serialStrings(tt.want), serialStrings(got)); d != "" {
				t.Fatalf("ParseSerial(%q) (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

func TestFormatSerial(t *testing.T) {
	tests := []struct {
		in   *big.Int
		want string
	}{
		{nil, ""},
		{big.NewInt(0), "00"},
		{big.NewInt(10), "0a"},
		{big.NewInt(0xa1b), "0a1b"},
		{big.NewInt(0x1234), "1234"},
		{big.NewInt(-0xa), "-0a"},
		{hexInt("DEADBEEFdeadbeefDEADBEEFdeadbeef"), "deadbeefdeadbeefdeadbeefdeadbeef"},
	}
	for _, tt := range tests {
		if got := pki.FormatSerial(tt.in); got != tt.want {
			t.Errorf("FormatSerial(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseSerialList(t *testing.T) {
	data := "# revoked dispatcher certificates\n" +
		"0A:1B\r\n" +
		"\n" +
		"   \n" +
		"serial=DEADBEEF   # old dispatcher\n" +
		"nonsense!\n" +
		"12\n" +
		"0x0a1b\n" + // duplicate of line 2
		"12 (0xd)\n" +
		"4096 (0x1000)"
	set, errs := pki.ParseSerialList([]byte(data))
	var gotErrs []string
	for _, e := range errs {
		gotErrs = append(gotErrs, e.Error())
	}
	wantErrs := []string{
		`line 6: serial "nonsense!" contains 'n', which is not a hex digit`,
		`line 9: serial "12 (0xd)": the decimal and hex parts differ`,
	}
	if d := cmp.Diff(wantErrs, gotErrs); d != "" {
		t.Fatalf("errors (-want +got):\n%s", d)
	}
	// "12" adds both 0x12 and 12: a revocation must not be missed.
	want := []*big.Int{decInt("12"), hexInt("12"), hexInt("a1b"), hexInt("1000"), hexInt("deadbeef")}
	if d := cmp.Diff(serialStrings(want), serialStrings(set.Values())); d != "" {
		t.Fatalf("set (-want +got):\n%s", d)
	}
	if set.Len() != 5 {
		t.Fatalf("Len = %d, want 5", set.Len())
	}
	for _, n := range want {
		if !set.Contains(n) {
			t.Errorf("set does not contain %s", pki.FormatSerial(n))
		}
	}
	for _, n := range []*big.Int{nil, big.NewInt(0), hexInt("a1c"), big.NewInt(-0xa1b)} {
		if set.Contains(n) {
			t.Errorf("set contains %v", n)
		}
	}

	var empty pki.SerialSet
	if empty.Contains(big.NewInt(1)) || empty.Len() != 0 || len(empty.Values()) != 0 {
		t.Fatal("zero SerialSet is not empty")
	}
	empty.Add(big.NewInt(1))
	if !empty.Contains(big.NewInt(1)) {
		t.Fatal("Add on the zero SerialSet lost the value")
	}
}

// FuzzParseSerial checks ParseSerial's contract on arbitrary text: a
// refusal is an error with a message; an acceptance is one value, or two
// different ones for a string of decimal digits only, each within 40 bytes
// and not negative, each reading back alone from the hex FormatSerial
// writes. Letter case and surrounding white space never change the answer.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{
		"0a1b", "0A:1B", "0x0a1b", "serial=0A1B", "2587 (0xa1b)", "10", "7", "", "-1 (-0x1)",
		"0a::1b", "12 (0xd)", strings.Repeat("ff", 41), "ｆｆ", "(", ":", "serial=:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, err := pki.ParseSerial(s)
		upper, uerr := pki.ParseSerial(" \t" + asciiUpper(s) + "\r\n")
		if (err == nil) != (uerr == nil) || !sameValues(ns, upper) {
			t.Fatalf("ParseSerial(%q) = %v, %v; upper case and padded: %v, %v", s, ns, err, upper, uerr)
		}
		if err != nil {
			if ns != nil {
				t.Fatal("values returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		if len(ns) < 1 || len(ns) > 2 {
			t.Fatalf("%d candidates", len(ns))
		}
		if len(ns) == 2 && ns[0].Cmp(ns[1]) == 0 {
			t.Fatal("duplicate candidates")
		}
		if len(ns) == 2 && strings.Trim(strings.TrimSpace(s), "0123456789") != "" {
			t.Fatalf("two readings of %q, which is not decimal digits only", s)
		}
		for _, n := range ns {
			if n.Sign() < 0 || n.BitLen() > 320 {
				t.Fatalf("value %x out of range", n)
			}
			// What FormatSerial writes reads back as that one value.
			back, err := pki.ParseSerial("0x" + pki.FormatSerial(n))
			if err != nil || len(back) != 1 || back[0].Cmp(n) != 0 {
				t.Fatalf("round trip of %x: %v, %v", n, back, err)
			}
		}
	})
}

// FuzzParseSerialList checks a revoked-serials file against a model: the
// set holds every reading of every line (comment removed) that ParseSerial
// accepts, and each other non-blank line is one "line N: " error, in order.
func FuzzParseSerialList(f *testing.F) {
	f.Add([]byte("0a1b\n# comment\n\nserial=0A1B\n12\n"))
	f.Add([]byte("bad\r\n0x\n12 (0xc)\n"))
	f.Add([]byte("#\n#\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		set, errs := pki.ParseSerialList(data)
		var want pki.SerialSet
		var wantErrs []string
		for i, line := range strings.Split(string(data), "\n") {
			text, _, _ := strings.Cut(line, "#")
			if text = strings.TrimSpace(text); text == "" {
				continue
			}
			ns, err := pki.ParseSerial(text)
			if err != nil {
				wantErrs = append(wantErrs, fmt.Sprintf("line %d: %v", i+1, err))
				continue
			}
			for _, n := range ns {
				want.Add(n)
			}
		}
		var gotErrs []string
		for _, e := range errs {
			gotErrs = append(gotErrs, e.Error())
		}
		if d := cmp.Diff(wantErrs, gotErrs); d != "" {
			t.Fatalf("errors (-model +got):\n%s", d)
		}
		if !sameValues(want.Values(), set.Values()) || set.Len() != want.Len() {
			t.Fatalf("set %v, model %v", set.Values(), want.Values())
		}
		for _, n := range set.Values() {
			if !set.Contains(n) {
				t.Fatalf("set does not contain its own value %x", n)
			}
		}
	})
}

// sameValues reports whether a and b hold the same numbers in the same
// order.
func sameValues(a, b []*big.Int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Cmp(b[i]) != 0 {
			return false
		}
	}
	return true
}

// asciiUpper upper-cases ASCII letters only.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
