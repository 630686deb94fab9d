package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Limits of a request.
const (
	maxBody     = 1 << 20          // request body, bytes (413 beyond)
	bodyTimeout = 30 * time.Second // to send the body once the headers are in
)

// errorBody is every error answer: the CLI's --json error, with code 1-3
// for an auth refusal, 4 and conflicts for a lock conflict.
type errorBody struct {
	OK        bool     `json:"ok"`
	Error     string   `json:"error"`
	Code      int      `json:"code,omitempty"`
	Conflicts []string `json:"conflicts,omitempty"`
	ReqID     string   `json:"reqid,omitempty"`
}

// lockConflictCode is the code of a 409 lock conflict (SPEC §7).
const lockConflictCode = 4

// httpError is an answer decided by the API itself: status and message,
// and for a 503 the seconds of its Retry-After (0: 1).
type httpError struct {
	status     int
	msg        string
	retryAfter int
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeJSON answers status with v as compact JSON and a newline.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"ok":false,"error":"internal error: cannot encode the answer"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(buf.Len()))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// statusOf maps an error to its HTTP status and body.
func statusOf(err error) (int, errorBody) {
	body := errorBody{Error: err.Error()}
	var (
		he     *httpError
		denied *control.AuthDeniedError
		lc     *store.LockConflictError
		bad    *control.BadRequestError
	)
	switch {
	case errors.As(err, &he):
		return he.status, body
	case errors.As(err, &denied):
		body.Code = denied.Code()
		return http.StatusForbidden, body
	case errors.As(err, &lc):
		body.Code, body.Conflicts = lockConflictCode, lc.Pairs()
		return http.StatusConflict, body
	case errors.As(err, &bad):
		return http.StatusBadRequest, body
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, body
	case errors.Is(err, control.ErrShuttingDown):
		return http.StatusServiceUnavailable, body
	}
	return http.StatusInternalServerError, body
}

// fail answers err. A 5xx is also noted for the request's log line.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := statusOf(err)
	if status >= 500 {
		stateOf(r).err = err
	}
	if status == http.StatusServiceUnavailable {
		retry := 1
		var he *httpError
		if errors.As(err, &he) && he.retryAfter > 0 {
			retry = he.retryAfter
		}
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	writeJSON(w, status, body)
}

// decodeBody reads the request body, at most maxBody bytes before the
// read deadline ServeHTTP set (bodyTimeout), as one JSON object into v.
// Member names must be spelt exactly as documented, once each, and
// unknown fields are refused (a misspelt "async", or "Async", must not run
// in the foreground); see checkMembers. An empty body leaves v as it is
// when emptyOK, else it is refused.
//
// Once the whole body is read, net/http lifts the deadline itself as it
// starts its background read of the connection (which notices a client
// that goes away), so a run the caller waits for is not cut. A body too
// large or too slow closes the connection after the answer, its deadline
// still set, so that what is left of it is not waited for.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	if r.ContentLength > maxBody {
		w.Header().Set("Connection", "close")
		return errorf(http.StatusRequestEntityTooLarge, "request body too large: %d bytes; the limit is 1 MiB (1048576 bytes)", r.ContentLength)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		w.Header().Set("Connection", "close")
		var (
			mbe *http.MaxBytesError
			ne  net.Error
		)
		switch {
		case errors.As(err, &mbe):
			return errorf(http.StatusRequestEntityTooLarge, "request body too large: the limit is 1 MiB (1048576 bytes)")
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			return errorf(http.StatusRequestTimeout, "request body not received in time: send it within %v of the headers", bodyTimeout)
		}
		return errorf(http.StatusBadRequest, "cannot read the request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if emptyOK {
			return nil
		}
		return errorf(http.StatusBadRequest, "empty request body: send a JSON object (see /openapi.json)")
	}
	if err := checkMembers(data, jsonNames(v)); err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "request body: %s", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "request body: data after the JSON object")
	}
	return nil
}

func jsonError(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("want a JSON object, got %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON object is cut short"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return "unknown field " + f + " (see /openapi.json)"
	}
	return msg
}

// timeoutValue reads a timeout field: a number of seconds or a duration
// string ("90s"); absent or null is 0.
type timeoutValue time.Duration

func (t *timeoutValue) UnmarshalJSON(b []byte) error {
	d, err := parseSeconds("timeout", b)
	if err != nil {
		return err
	}
	*t = timeoutValue(d)
	return nil
}

// parseSeconds reads the JSON value of field name as a timeout field is
// read: a number of seconds or a duration string ("90s", "5m"); null is
// 0. Errors name the field.
func parseSeconds(name string, b []byte) (time.Duration, error) {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		if n < 0 || n > float64(1<<31) {
			return 0, fmt.Errorf("%s %v: want 0 or more seconds", name, n)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, fmt.Errorf(`%s: want a number of seconds or a duration like "90s"`, name)
	}
	d, err := config.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf(`%s %q: want a number of seconds or a duration like "90s"`, name, s)
	}
	return d, nil
}
