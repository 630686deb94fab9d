package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"
)

// Limits against hostile or broken clients, besides maxBody and
// bodyTimeout (respond.go) and api_max_requests (Options.MaxRequests).
// docs/API.md (Limits) lists each with the answer a client gets.
const (
	// defaultMaxConns bounds the connections open at once. Over it the
	// listener stops accepting: new connections wait in the kernel's
	// backlog until one closes (the timeouts below guarantee one does).
	defaultMaxConns = 4096
	// defaultMaxAsyncRuns bounds the runs started with "async": true that
	// are still in flight (503 beyond). Runs the caller waits for are
	// bounded by api_max_requests, as each holds a request.
	defaultMaxAsyncRuns = 256
	// defaultMaxStreams bounds the event streams open at once (503
	// beyond): each one that follows a run of another process re-reads
	// its record every half second.
	defaultMaxStreams = 256

	// maxHeaderLines bounds the header lines of a request (every value of
	// every header, and Host): 431 beyond. maxHeaderBytes bounds their
	// size; net/http answers 431 itself beyond that.
	maxHeaderLines = 100
	// writeTimeout bounds each write of an answer: a client that does not
	// take the bytes within it is disconnected. It is armed per write, not
	// per request, so a sync run or an event stream may last as long as
	// the run.
	writeTimeout = 30 * time.Second
	// maxJSONDepth bounds the nesting of a request body; the API's bodies
	// need two levels.
	maxJSONDepth = 32
	// busyRetryAfter is the Retry-After of a 503 for a run or a stream
	// over its bound: they last longer than a request.
	busyRetryAfter = 5
)

// hasBody reports whether a request comes with a body to read: a
// Content-Length over 0, or chunked (-1).
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// checkMembers walks data, one JSON value, for what encoding/json would
// let through without a word: nesting deeper than maxJSONDepth, a member
// name given twice in one object (json keeps the last), and in the
// top-level object a name that is not spelt exactly as one of names (json
// matches "Script", "SCRIPT" and "ſcript" to "script"). Names that match
// none of them, even ignoring case, are unknown fields. A syntax error
// ends the walk without an error: the decoder that follows reports it with
// its offset. The messages are those of wire.DecodeRequest, which does
// the same for the agent and pairing protocols but ignores unknown
// fields, as they must.
func checkMembers(data []byte, names []string) error {
	type frame struct {
		object  bool
		wantKey bool
		seen    map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) == maxJSONDepth {
					return fmt.Errorf("the JSON is nested deeper than %d levels", maxJSONDepth)
				}
				stack = append(stack, frame{object: d == '{', wantKey: d == '{'})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		} else if top := len(stack) - 1; top >= 0 && stack[top].wantKey {
			key, _ := tok.(string)
			f := &stack[top]
			if f.seen[key] {
				return fmt.Errorf("duplicate field %q", key)
			}
			if f.seen == nil {
				f.seen = map[string]bool{}
			}
			f.seen[key] = true
			f.wantKey = false
			if top == 0 {
				if err := knownName(key, names); err != nil {
					return err
				}
			}
			continue
		}
		// A value is complete: a scalar, or the container just closed.
		if len(stack) == 0 {
			return nil
		}
		if top := &stack[len(stack)-1]; top.object {
			top.wantKey = true
		}
	}
}

// knownName refuses a member name that is not exactly one of names.
func knownName(key string, names []string) error {
	for _, n := range names {
		if key == n {
			return nil
		}
	}
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return fmt.Errorf("field %q is not %q: field names are case-sensitive", key, n)
		}
	}
	return fmt.Errorf("unknown field %q (see /openapi.json)", key)
}

// jsonNames returns the JSON member names of the struct v points to,
// those of its embedded structs included.
func jsonNames(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			// An embedded struct's members are the body's own, as
			// encoding/json decodes them.
			names = append(names, jsonNames(reflect.New(f.Type).Interface())...)
		case name == "-" || !f.IsExported():
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	return names
}
