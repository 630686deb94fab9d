package exec

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzValidName checks ValidName against NamePattern, and Lookup against
// ValidName: a name is refused as invalid exactly when ValidName says so.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"deploy", "a-b_C9", "", "a/b", "..", "a.b", "a;b", "$x", "a b", "ä", "a\x00",
		strings.Repeat("x", 64), strings.Repeat("x", 65), "a\n", "\xff"} {
		f.Add(s)
	}
	re := regexp.MustCompile(NamePattern)
	empty, _ := NewAllowlist(nil, nil)
	f.Fuzz(func(t *testing.T, name string) {
		valid := ValidName(name)
		if want := re.MatchString(name); valid != want {
			t.Fatalf("ValidName(%q) = %v, NamePattern says %v", name, valid, want)
		}
		if valid && strings.ContainsAny(name, "/. \t\n\x00;$`|&<>*?'\"\\") {
			t.Fatalf("ValidName(%q) accepted a separator, dot, space or shell metacharacter", name)
		}
		_, err := empty.Lookup(name)
		var na *NotAllowedError
		if !errors.As(err, &na) || err.Error() != "script not permitted" {
			t.Fatalf("Lookup(%q) = %v, want a NotAllowedError", name, err)
		}
		if invalid := strings.HasPrefix(na.Reason, "invalid name"); invalid == valid {
			t.Fatalf("Lookup(%q): Reason %q, but ValidName = %v", name, na.Reason, valid)
		}
	})
}

// FuzzCheckArgs splits its input at \x01 into arguments, repeated to reach
// the count limit, and checks CheckArgs against the rules written out
// again here.
func FuzzCheckArgs(f *testing.F) {
	f.Add("a\x01b c\x01$(id)", uint16(1))
	f.Add("", uint16(1024))
	f.Add("x", uint16(1025))
	f.Add("nul\x00here\x01ok", uint16(3))
	f.Add(strings.Repeat("z", MaxArgLen+1), uint16(1))
	f.Add(strings.Repeat("y", 100000), uint16(11))
	f.Fuzz(func(t *testing.T, data string, n uint16) {
		one := strings.Split(data, "\x01")
		var args []string
		for range int(n) % (MaxArgs + 10) {
			args = append(args, one...)
			if len(args) > MaxArgs+1 {
				break
			}
		}
		err := CheckArgs(args)

		total, firstBad := 0, -1
		for i, a := range args {
			total += len(a)
			if firstBad < 0 && (len(a) > MaxArgLen || strings.IndexByte(a, 0) >= 0) {
				firstBad = i
			}
		}
		var ae *ArgsError
		switch {
		case len(args) > MaxArgs || total > MaxArgBytes:
			if !errors.As(err, &ae) || ae.Index != -1 {
				t.Fatalf("%d args, %d bytes: CheckArgs = %v, want a list error", len(args), total, err)
			}
		case firstBad >= 0:
			if !errors.As(err, &ae) || ae.Index != firstBad || !strings.HasPrefix(ae.Reason, "argument "+strconv.Itoa(firstBad+1)+" ") {
				t.Fatalf("argument %d is bad: CheckArgs = %v", firstBad, err)
			}
		case err != nil:
			t.Fatalf("%d args, %d bytes, none bad: CheckArgs = %v", len(args), total, err)
		}
	})
}
