package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// LimitRequests enforces the request limits of the operational protocol in
// front of next: more than MaxHeaderLines header lines (every value of every
// header, plus Host) is answered 431 {"error":"too many header lines"}; a
// Content-Length over MaxBodySize is answered 413 {"error":"request body too
// large"}; any other body is wrapped in http.MaxBytesReader(MaxBodySize), so
// a chunked body cannot exceed it either (DecodeRequest then answers 413).
//
// The byte size of the headers is net/http's business: the agent sets
// http.Server.MaxHeaderBytes = MaxHeaderBytes, and net/http answers 431
// itself beyond it (net/http allows a few KiB of slack over the figure).
func LimitRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerLines(r) > MaxHeaderLines {
			WriteError(w, http.StatusRequestHeaderFieldsTooLarge, "too many header lines")
			return
		}
		if r.ContentLength > MaxBodySize {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodySize)
		}
		next.ServeHTTP(w, r)
	})
}

func headerLines(r *http.Request) int {
	n := 0
	if r.Host != "" {
		n++ // net/http moves Host out of r.Header
	}
	for _, vs := range r.Header {
		n += len(vs)
	}
	return n
}

// RequestError is a request DecodeRequest refuses: Status is 400 or 413 and
// Msg the text for WriteError.
type RequestError struct {
	Status int
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

// DecodeRequest reads a request body that must be one JSON object into v (a
// pointer). Unknown fields are ignored (WIRE.md); an empty body, anything
// but an object, trailing data after it, values of the wrong type, a key
// given twice in one object and a key that differs from a field's name only
// in case (encoding/json alone would match {"SCRIPT":…} to "script") are a
// *RequestError with status 400; a body over MaxBodySize one with 413.
func DecodeRequest(r *http.Request, v any) error {
	if r.Body == nil {
		return &RequestError{Status: http.StatusBadRequest, Msg: "empty request body"}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &RequestError{Status: http.StatusRequestEntityTooLarge, Msg: "request body too large"}
		}
		return &RequestError{Status: http.StatusBadRequest, Msg: "cannot read request body"}
	}
	if len(b) > MaxBodySize {
		return &RequestError{Status: http.StatusRequestEntityTooLarge, Msg: "request body too large"}
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return &RequestError{Status: http.StatusBadRequest, Msg: "empty request body"}
	}
	if trimmed[0] != '{' {
		return &RequestError{Status: http.StatusBadRequest, Msg: "request body must be a json object"}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &RequestError{Status: http.StatusBadRequest, Msg: jsonErrorText(err)}
	}
	if err := checkKeys(b, reflect.TypeOf(v)); err != nil {
		return &RequestError{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	return nil
}

// checkKeys makes field names exact. encoding/json matches an object key to
// a struct field ignoring case (with Unicode folding: "ſcript" is "script")
// and keeps the last of repeated keys, so {"script":"a","Script":"b"} would
// run b where a reader of the body, or a Perl agent, sees a. checkKeys walks
// data, which json.Unmarshal has accepted (so its depth is bounded), along
// type t and refuses a key that equals a field's name only when case is
// ignored, and a key given twice in one object. Keys that match no field
// stay ignored, and so is everything below them.
func checkKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkKeys(dec, t, "")
}

// walkKeys consumes the next value of dec, checking the keys of the objects
// in it that t describes; path names the value in messages.
func walkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || (t.Kind() != reflect.Struct && t.Kind() != reflect.Map && t.Kind() != reflect.Slice && t.Kind() != reflect.Array) {
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			var elem reflect.Type
			if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
				elem = t.Elem()
			}
			if err := walkKeys(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case json.Delim('{'):
		fields := jsonFields(t)
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			name := joinPath(path, key)
			if seen[key] {
				return fmt.Errorf("duplicate field %q", name)
			}
			seen[key] = true
			var vt reflect.Type
			switch t.Kind() {
			case reflect.Map:
				vt = t.Elem()
			case reflect.Struct:
				if ft, ok := fields[key]; ok {
					vt = ft
					break
				}
				for _, f := range slices.Sorted(maps.Keys(fields)) {
					if strings.EqualFold(f, key) {
						return fmt.Errorf("field %q is not %q: field names are case-sensitive", name, joinPath(path, f))
					}
				}
			}
			if err := walkKeys(dec, vt, name); err != nil {
				return err
			}
		}
	default:
		return nil // null, or a scalar where t expects more: json.Unmarshal has judged it
	}
	_, err = dec.Token() // the closing ] or }
	return err
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps the JSON names of struct t's fields, those of embedded
// structs included, to their types, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	if t.Kind() != reflect.Struct {
		return m
	}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := m[n]; !ok {
						m[n] = typ
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = ft
	}
	return m
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn) && strings.HasSuffix(syn.Error(), "exceeded max depth"):
		// encoding/json stops at 10000 levels with "invalid character '['
		// exceeded max depth", which does not say what is wrong.
		return fmt.Sprintf("invalid json at byte %d: nested more than %d levels deep", syn.Offset, maxJSONDepth)
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid json at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("wrong type for field %q (got %s)", typ.Field, typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("wrong type (got %s)", typ.Value)
	}
	return "invalid json: " + strings.TrimPrefix(err.Error(), "json: ")
}

// WriteJSON answers status with v as JSON and a Content-Length. If v cannot
// be encoded the answer is 500 {"error":"internal error"}.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal error"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// WriteError answers status with {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorResponse{Error: msg})
}

// WantsStream reports whether the request asks for a streamed run: its
// Accept header lists application/x-ndjson (with a q other than 0).
func WantsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != ContentTypeNDJSON {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}
