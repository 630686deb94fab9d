package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrorKind says which stage of a request to an agent failed.
type ErrorKind string

// The kinds of *Error.
const (
	// KindConnect: the TCP connection could not be made (refused,
	// unreachable, unknown host, invalid address).
	KindConnect ErrorKind = "connect"
	// KindTLS: the TLS handshake failed, the agent's certificate failed the
	// identity checks (Err then wraps the *pki.IdentityError), or the agent
	// refused the dispatcher's certificate.
	KindTLS ErrorKind = "tls"
	// KindTimeout: the connect timeout or the read timeout ran out.
	KindTimeout ErrorKind = "timeout"
	// KindHTTP: the agent answered with a status other than 200.
	KindHTTP ErrorKind = "http"
	// KindProtocol: the answer could not be used (bad JSON, too large, a
	// stream without a result) or the connection broke in the middle of it.
	KindProtocol ErrorKind = "protocol"
	// KindCanceled: the caller's context was cancelled.
	KindCanceled ErrorKind = "cancelled"
)

// ErrNotFound is wrapped by the *Error for a 404 answer: the agent does not
// know the path, typically because it runs an older version. Test with
// errors.Is(err, wire.ErrNotFound).
var ErrNotFound = errors.New("not supported by this agent version")

// Error is the error of every Client method. Its message is short,
// lowercase and does not repeat the host, so that it fits the error field of
// a per-host result; Host says which agent it is about.
type Error struct {
	Host   string    // the Target's Host
	Kind   ErrorKind // stage that failed
	Status int       // HTTP status, for KindHTTP
	Err    error     // the cause; its message is the message of Error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Kind) + " error"
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the error is a connect or read timeout.
func (e *Error) Timeout() bool { return e.Kind == KindTimeout }

// msgError carries a message chosen for users while keeping the underlying
// error for errors.Is and errors.As.
type msgError struct {
	msg string
	err error
}

func (m *msgError) Error() string { return m.msg }

func (m *msgError) Unwrap() error { return m.err }

func newError(host string, kind ErrorKind, cause error, format string, args ...any) *Error {
	return &Error{Host: host, Kind: kind, Err: &msgError{msg: fmt.Sprintf(format, args...), err: cause}}
}

// seconds formats d as the N of "after Ns": whole seconds without a
// fraction, shorter durations with as many decimals as needed.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func readTimeoutError(host string, d time.Duration, cause error) *Error {
	return newError(host, KindTimeout, cause, "read timeout after %ss", seconds(d))
}

func connectTimeoutError(host string, d time.Duration, cause error) *Error {
	return newError(host, KindTimeout, cause, "connect timeout after %ss", seconds(d))
}

func protocolError(format string, args ...any) *Error {
	return newError("", KindProtocol, nil, format, args...)
}

// sizeString formats a byte count for a message.
func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// peerText makes text that came from an agent fit for one line of output:
// control characters become spaces and it is cut at 200 characters.
func peerText(s string) string {
	const max = 200
	var b strings.Builder
	n := 0
	for _, r := range strings.TrimSpace(s) {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
