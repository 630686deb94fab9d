package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
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
// but an object, trailing data after it and values of the wrong type are a
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
	return nil
}

func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
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
