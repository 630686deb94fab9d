package exec

import (
	"fmt"
	"strings"
)

// Limits on the argument list of one run (SPEC §5). Arguments may hold any
// byte except NUL.
const (
	MaxArgs     = 1024    // arguments after the script path
	MaxArgBytes = 1 << 20 // their total length in bytes

	// MaxArgLen is the longest single argument: Linux refuses to execve an
	// argument (with its terminating NUL) longer than 32 pages of 4 KiB
	// (MAX_ARG_STRLEN) with E2BIG, so a longer one is refused up front with
	// a message instead of failing as "exec failed".
	MaxArgLen = 32*4096 - 1
)

// ArgsError says why an argument list is refused. The agent answers it as
// a client error (HTTP 400) with Error() as the message.
type ArgsError struct {
	Index  int    // index in the list (0 = first argument) of the offending argument; -1 when about the whole list
	Reason string // what is wrong, e.g. "argument 3 contains a NUL byte" (numbered from 1)
}

func (e *ArgsError) Error() string { return e.Reason }

// CheckArgs reports, as an *[ArgsError], the first rule args break: more
// than [MaxArgs] arguments, more than [MaxArgBytes] in total, an argument
// longer than [MaxArgLen], or an argument containing a NUL byte (which
// execve cannot carry). Anything else — spaces, quotes, newlines, shell
// syntax, "..", invalid UTF-8 — is passed to the script as it is.
func CheckArgs(args []string) error {
	if len(args) > MaxArgs {
		return &ArgsError{Index: -1, Reason: fmt.Sprintf("too many arguments: %d, the limit is %d", len(args), MaxArgs)}
	}
	total := 0
	for _, a := range args {
		total += len(a)
	}
	if total > MaxArgBytes {
		return &ArgsError{Index: -1, Reason: fmt.Sprintf("arguments too large: %d bytes in total, the limit is %d", total, MaxArgBytes)}
	}
	for i, a := range args {
		if len(a) > MaxArgLen {
			return &ArgsError{Index: i, Reason: fmt.Sprintf("argument %d is %d bytes, the limit for one argument is %d", i+1, len(a), MaxArgLen)}
		}
		if strings.IndexByte(a, 0) >= 0 {
			return &ArgsError{Index: i, Reason: fmt.Sprintf("argument %d contains a NUL byte", i+1)}
		}
	}
	return nil
}
