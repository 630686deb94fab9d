package cmdutil

import (
	"errors"
	"fmt"
)

// Exit codes shared by every role.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// ExitError is an error that asks for a specific process exit code.
// A nil Err means "exit with Code and print nothing".
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err so that the process exits with code.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// Usagef reports a mistake on the command line (exit 2).
func Usagef(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Code returns the exit code err asks for: 0 for nil, the ExitError code
// when err wraps one, 1 otherwise.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitFailure
}
