package exec

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheckArgs(t *testing.T) {
	long := strings.Repeat("a", MaxArgLen)
	for _, tc := range []struct {
		name string
		args []string
		want *ArgsError // nil: accepted
	}{
		{name: "none", args: nil},
		{name: "empty strings", args: []string{"", ""}},
		{name: "any byte but NUL", args: []string{"$(id)", "a b", "\n", "\xff", "../..", ";|&`'\""}},
		{name: "1024 arguments", args: make([]string, MaxArgs)},
		{name: "1025 arguments", args: make([]string, MaxArgs+1),
			want: &ArgsError{Index: -1, Reason: "too many arguments: 1025, the limit is 1024"}},
		{name: "exactly 1 MiB", args: append(repeat(long, 8), strings.Repeat("b", MaxArgBytes-8*MaxArgLen))},
		{name: "1 MiB and a byte", args: append(repeat(long, 8), strings.Repeat("b", MaxArgBytes-8*MaxArgLen+1)),
			want: &ArgsError{Index: -1, Reason: "arguments too large: 1048577 bytes in total, the limit is 1048576"}},
		{name: "longest argument", args: []string{long}},
		{name: "argument too long", args: []string{"x", long + "a"},
			want: &ArgsError{Index: 1, Reason: "argument 2 is 131072 bytes, the limit for one argument is 131071"}},
		{name: "NUL", args: []string{"a", "b", "c\x00d"},
			want: &ArgsError{Index: 2, Reason: "argument 3 contains a NUL byte"}},
		{name: "only NUL", args: []string{"\x00"},
			want: &ArgsError{Index: 0, Reason: "argument 1 contains a NUL byte"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckArgs(tc.args)
			if tc.want == nil {
				if err != nil {
					t.Errorf("CheckArgs: %v, want nil", err)
				}
				return
			}
			var ae *ArgsError
			if !errors.As(err, &ae) {
				t.Fatalf("CheckArgs = %v, want *ArgsError", err)
			}
			if diff := cmp.Diff(tc.want, ae); diff != "" {
				t.Errorf("ArgsError (-want +got):\n%s", diff)
			}
			if err.Error() != tc.want.Reason {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.want.Reason)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
