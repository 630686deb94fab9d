package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLimitRequests(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req PingRequest
		if err := DecodeRequest(r, &req); err != nil {
			var re *RequestError
			errors.As(err, &re)
			WriteError(w, re.Status, re.Msg)
			return
		}
		WriteJSON(w, http.StatusOK, PingResponse{Status: "ok", ReqID: req.ReqID})
	})
	h := LimitRequests(ok)
	withHeaders := func(n int) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://web-01/ping", strings.NewReader(`{"reqid":"h"}`))
		for i := range n {
			r.Header.Add("X-Extra", strconv.Itoa(i))
		}
		return r
	}
	bigBody := func(declared bool) *http.Request {
		body := `{"reqid":"` + strings.Repeat("x", 2<<20) + `"}`
		r := httptest.NewRequest(http.MethodPost, "https://web-01/ping", strings.NewReader(body))
		if !declared {
			r.ContentLength = -1 // chunked: the size is only found by reading
		}
		return r
	}
	for _, tc := range []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantBody   string
	}{
		// Host is a line too: Host + 31 = 32 is fine, Host + 32 = 33 is not.
		{"32 header lines", withHeaders(31), 200, `{"status":"ok","host":"","version":"","expiry":"","reqid":"h"}`},
		{"33 header lines", withHeaders(32), 431, `{"error":"too many header lines"}`},
		{"content-length 2 MiB", bigBody(true), 413, `{"error":"request body too large"}`},
		{"chunked 2 MiB", bigBody(false), 413, `{"error":"request body too large"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.req)
			got := []any{rec.Code, strings.TrimSpace(rec.Body.String()), rec.Header().Get("Content-Type")}
			want := []any{tc.wantStatus, tc.wantBody, "application/json"}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("[status body content-type] (-want +got):\n%s", d)
			}
		})
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		want   RunRequest
		status int
		msg    string
	}{
		{name: "ok", body: `{"script":"deploy","args":["a","b c"],"reqid":"r","username":"u","token":"t","timeout":5}`,
			want: RunRequest{Script: "deploy", Args: []string{"a", "b c"}, ReqID: "r", Username: "u", Token: "t", Timeout: 5}},
		{name: "unknown fields", body: ` {"script":"deploy","future":{"x":[1,2]},"more":true}` + "\n",
			want: RunRequest{Script: "deploy"}},
		{name: "trailing garbage", body: `{"script":"deploy"} x`, status: 400,
			msg: "invalid json at byte 21: invalid character 'x' after top-level value"},
		{name: "two objects", body: `{"script":"a"}{"script":"b"}`, status: 400,
			msg: "invalid json at byte 15: invalid character '{' after top-level value"},
		{name: "wrong type", body: `{"script":"deploy","args":"a b"}`, status: 400, msg: `wrong type for field "args" (got string)`},
		{name: "array", body: `["deploy"]`, status: 400, msg: "request body must be a json object"},
		{name: "null", body: `null`, status: 400, msg: "request body must be a json object"},
		{name: "empty", body: "", status: 400, msg: "empty request body"},
		{name: "blank", body: " \n", status: 400, msg: "empty request body"},
		{name: "truncated", body: `{"script":`, status: 400, msg: "invalid json at byte 10: unexpected end of JSON input"},
		{name: "too large", body: `{"script":"` + strings.Repeat("x", MaxBodySize) + `"}`, status: 413, msg: "request body too large"},
		// encoding/json alone matches keys ignoring case and keeps the
		// last of repeated keys: each of these would run another script
		// than a case-sensitive reader (a Perl agent, a log) sees.
		{name: "upper-case key", body: `{"SCRIPT":"touch"}`, status: 400,
			msg: `field "SCRIPT" is not "script": field names are case-sensitive`},
		{name: "case variant after the field", body: `{"script":"hello","Script":"evil"}`, status: 400,
			msg: `field "Script" is not "script": field names are case-sensitive`},
		{name: "case variant before the field", body: `{"Script":"evil","script":"hello"}`, status: 400,
			msg: `field "Script" is not "script": field names are case-sensitive`},
		{name: "unicode folding", body: `{"\u017fcript":"touch"}`, status: 400,
			msg: `field "ſcript" is not "script": field names are case-sensitive`},
		{name: "kelvin sign", body: `{"script":"deploy","to\u212aen":"t"}`, status: 400,
			msg: "field \"to\u212aen\" is not \"token\": field names are case-sensitive"},
		{name: "duplicate key", body: `{"script":"hello","script":"evil"}`, status: 400, msg: `duplicate field "script"`},
		{name: "duplicate key escaped", body: `{"script":"hello","scr\u0069pt":"evil"}`, status: 400, msg: `duplicate field "script"`},
		{name: "duplicate unknown key", body: `{"script":"deploy","x":1,"x":2}`, status: 400, msg: `duplicate field "x"`},
		{name: "anything goes below an unknown key", body: `{"script":"deploy","future":{"SCRIPT":1,"a":1,"a":[{"b":2,"b":3}]}}`,
			want: RunRequest{Script: "deploy"}},
		{name: "deep nesting", body: `{"script":"deploy","args":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, status: 400,
			msg: "invalid json at byte 10026: nested more than 10000 levels deep"},
		{name: "deep nesting below an unknown key", body: `{"script":"deploy","x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, status: 400,
			msg: "invalid json at byte 10023: nested more than 10000 levels deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/run", strings.NewReader(tc.body))
			var got RunRequest
			err := DecodeRequest(r, &got)
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Errorf("decoded (-want +got):\n%s", d)
				}
				return
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want *RequestError", err, err)
			}
			if d := cmp.Diff(RequestError{Status: tc.status, Msg: tc.msg}, *re); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
		})
	}
}

// Field names are exact at every depth the target type describes.
func TestDecodeRequestStrictKeysNested(t *testing.T) {
	type item struct {
		Name string `json:"name"`
	}
	type embedded struct {
		Extra string `json:"extra"`
	}
	type body struct {
		Items []item          `json:"items"`
		M     map[string]item `json:"m"`
		P     *item           `json:"p"`
		embedded
		Skip  string `json:"-"`
		Plain string
	}
	for _, tc := range []struct {
		name, body, msg string
	}{
		{"ok", `{"items":[{"name":"a"}],"m":{"K":{"name":"b"}},"p":{"name":"c"},"extra":"d","Plain":"e","Skip":"f"}`, ""},
		{"in a slice", `{"items":[{"name":"a"},{"NAME":"b"}]}`, `field "items[1].NAME" is not "items[1].name": field names are case-sensitive`},
		{"in a map value", `{"m":{"k":{"Name":"x"}}}`, `field "m.k.Name" is not "m.k.name": field names are case-sensitive`},
		{"map keys are free but unique", `{"m":{"k":{},"k":{}}}`, `duplicate field "m.k"`},
		{"through a pointer", `{"p":{"nAme":"x"}}`, `field "p.nAme" is not "p.name": field names are case-sensitive`},
		{"embedded", `{"EXTRA":"x"}`, `field "EXTRA" is not "extra": field names are case-sensitive`},
		{"untagged", `{"plain":"x"}`, `field "plain" is not "Plain": field names are case-sensitive`},
		{"null where an object may be", `{"p":null,"items":null,"m":null}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(tc.body))
			var got body
			err := DecodeRequest(r, &got)
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if msg != tc.msg {
				t.Errorf("error %q, want %q", msg, tc.msg)
			}
		})
	}
}

// FuzzDecodeRequest decodes arbitrary bodies into every request type of
// the agent, as they arrive, and through a http.MaxBytesReader one byte
// short of the body and one exactly its size (what LimitRequests and the
// pairing listener put in front). A refusal is a *RequestError with a
// message: 413 exactly when the body is over the limit, 400 otherwise. An
// accepted body is one JSON object, and whether a body is accepted depends
// on the type decoded into only through "wrong type for field" refusals and
// keys that differ from one of the type's field names only in case.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"script":"deploy","args":["a"],"reqid":"r","timeout":3}`,
		`{"script":"deploy"} trailing`,
		`[]`, `null`, ``, `{"args":[1]}`, `{"timeout":1e400}`, `{"a":` + strings.Repeat("[", 20000),
		"{\"script\":\"\xff\\u0000\"}",
		`{"SCRIPT":"x"}`, `{"script":"a","script":"b"}`, `{"args":[],"x":{"y":1,"y":2}}`,
	} {
		f.Add([]byte(s))
	}
	typeDependent := func(err error) bool {
		return strings.HasPrefix(err.Error(), "wrong type for field ") || strings.HasSuffix(err.Error(), ": field names are case-sensitive")
	}
	types := []func() any{
		func() any { return new(RunRequest) }, func() any { return new(PingRequest) },
		func() any { return new(RenewRequest) }, func() any { return new(RenewCompleteRequest) },
		func() any { return new(RevocationsRequest) }, func() any { return new(DispatcherSerialRequest) },
		func() any { return new(PairRequest) },
	}
	decode := func(body []byte, limit int64, v any) error {
		r := httptest.NewRequest(http.MethodPost, "/run", bytes.NewReader(body))
		if limit >= 0 {
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
		}
		return DecodeRequest(r, v)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var first error
		for i, newV := range types {
			err := decode(body, -1, newV())
			if err != nil {
				var re *RequestError
				if !errors.As(err, &re) {
					t.Fatalf("error %v (%T), want *RequestError", err, err)
				}
				want := http.StatusBadRequest
				if len(body) > MaxBodySize {
					want = http.StatusRequestEntityTooLarge
				}
				if re.Status != want {
					t.Fatalf("status %d for %d bytes, want %d", re.Status, len(body), want)
				}
				if re.Msg == "" {
					t.Fatal("empty message")
				}
			} else {
				if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(body) {
					t.Fatalf("accepted %q, which is not one json object", body)
				}
			}
			if i == 0 {
				first = err
				continue
			}
			if (err == nil) != (first == nil) || err != nil && err.Error() != first.Error() {
				for _, e := range []error{err, first} {
					if e != nil && !typeDependent(e) {
						t.Fatalf("type %d: %v; type 0: %v", i, err, first)
					}
				}
			}
		}
		if len(body) == 0 || len(body) > MaxBodySize {
			return
		}
		var re *RequestError
		if err := decode(body, int64(len(body))-1, new(RunRequest)); !errors.As(err, &re) || re.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d bytes through a limit of %d: %v, want 413", len(body), len(body)-1, err)
		}
		if err := decode(body, int64(len(body)), new(RunRequest)); fmt.Sprint(err) != fmt.Sprint(first) {
			t.Fatalf("%d bytes through a limit of as many: %v; without a limit: %v", len(body), err, first)
		}
	})
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, RunResponse{Script: "a<b>&c", Exit: 1, Stdout: "x"})
	body := rec.Body.String()
	want := `{"script":"a<b>&c","exit":1,"stdout":"x","stderr":"","reqid":""}` + "\n"
	got := []string{strconv.Itoa(rec.Code), rec.Header().Get("Content-Type"), rec.Header().Get("Content-Length"), body}
	if d := cmp.Diff([]string{"200", "application/json", strconv.Itoa(len(want)), want}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	rec = httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, map[string]any{"bad": func() {}})
	if rec.Code != 500 || strings.TrimSpace(rec.Body.String()) != `{"error":"internal error"}` {
		t.Errorf("unencodable value: %d %s", rec.Code, rec.Body)
	}

	rec = httptest.NewRecorder()
	WriteError(rec, http.StatusForbidden, ErrCertRevoked)
	if rec.Code != 403 || strings.TrimSpace(rec.Body.String()) != `{"error":"certificate revoked"}` {
		t.Errorf("WriteError: %d %s", rec.Code, rec.Body)
	}
}

func TestWantsStream(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{"application/json"}, false},
		{[]string{"application/x-ndjson"}, true},
		{[]string{"Application/X-NDJSON; charset=utf-8"}, true},
		{[]string{"application/json, application/x-ndjson;q=0.5"}, true},
		{[]string{"application/json", "application/x-ndjson"}, true},
		{[]string{"application/x-ndjson;q=0"}, false},
		{[]string{"*/*"}, false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/run", nil)
		for _, a := range tc.accept {
			r.Header.Add("Accept", a)
		}
		if got := WantsStream(r); got != tc.want {
			t.Errorf("Accept %q: %v, want %v", tc.accept, got, tc.want)
		}
	}
}

func TestStreamWriterConcurrent(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := NewStreamWriter(rec)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := sw.Event(NewStreamEvent("stdout", fmt.Appendf(nil, "%d-%d\n", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	res := RunResponse{Script: "s", Exit: 0, Stdout: "all", ReqID: "r"}
	if err := sw.Final(res); err != nil {
		t.Fatal(err)
	}
	if err := sw.Event(NewStreamEvent("stdout", []byte("late"))); !errors.Is(err, ErrStreamDone) {
		t.Errorf("Event after Final: %v, want ErrStreamDone", err)
	}
	if rec.Code != 200 || rec.Header().Get("Content-Type") != ContentTypeNDJSON || !rec.Flushed {
		t.Errorf("status %d, content-type %q, flushed %v", rec.Code, rec.Header().Get("Content-Type"), rec.Flushed)
	}
	seen := map[string]bool{}
	got, err := readStream(rec.Body, 1<<20, func(e StreamEvent) { seen[e.Data] = true })
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(res, *got); d != "" {
		t.Errorf("final (-want +got):\n%s", d)
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct events, want %d", len(seen), writers*each)
	}
}

func TestReadStream(t *testing.T) {
	type result struct {
		Events []StreamEvent
		Final  *RunResponse
		Err    string
	}
	for _, tc := range []struct {
		name  string
		input string
		want  result
	}{
		{"events and result", `{"stream":"stdout","data":"a"}` + "\n" + `{"stream":"stderr","data":"b"}` + "\r\n\n" +
			`{"script":"s","exit":0,"stdout":"a","stderr":"b","reqid":"r"}` + "\n",
			result{Events: []StreamEvent{{Stream: "stdout", Data: "a"}, {Stream: "stderr", Data: "b"}},
				Final: &RunResponse{Script: "s", Stdout: "a", Stderr: "b", ReqID: "r"}}},
		{"result without newline", `{"exit":-1,"error":"script not permitted"}`,
			result{Final: &RunResponse{Exit: -1, Error: ErrScriptNotPermitted}}},
		{"null line", `{"heartbeat":1}` + "\n" + `{}` + "\n" + `null` + "\n" + `{"exit":2}` + "\n",
			result{Err: "bad stream line: not a json object"}},
		{"unknown objects skipped", `{"heartbeat":1}` + "\n" + `{}` + "\n" + `{"exit":2}` + "\n" + `{"stream":"stdout","data":"after"}`,
			result{Final: &RunResponse{Exit: 2}}},
		{"no result", `{"stream":"stdout","data":"a"}` + "\n",
			result{Events: []StreamEvent{{Stream: "stdout", Data: "a"}}, Err: "stream ended without a result"}},
		{"empty", "", result{Err: "stream ended without a result"}},
		{"bad json", `{"stream":"stdout","data":"a"` + "\n", result{Err: "bad stream line: unexpected end of JSON input"}},
		{"wrong type", `{"exit":"0"}`, result{Err: "bad stream line: json: cannot unmarshal string into Go struct field streamLine.exit of type int"}},
		{"line too long", `{"stream":"stdout","data":"` + strings.Repeat("x", 200) + `"}`,
			result{Err: "stream line larger than 128 bytes (lower output_limit on the agent)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got result
			final, err := readStream(strings.NewReader(tc.input), 128, func(e StreamEvent) { got.Events = append(got.Events, e) })
			got.Final = final
			if err != nil {
				got.Err = err.Error()
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// A line longer than the reader's buffer is put together from pieces.
func TestReadStreamLongLine(t *testing.T) {
	data := strings.Repeat("é", 100<<10)
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(StreamEvent{Stream: "stdout", Data: data})
	_ = json.NewEncoder(&buf).Encode(RunResponse{Exit: 0, Stdout: data})
	var events []StreamEvent
	final, err := readStream(io.MultiReader(&buf), 1<<20, func(e StreamEvent) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Data != data || final.Stdout != data {
		t.Errorf("long lines not reassembled: %d events", len(events))
	}
}

func FuzzStreamParse(f *testing.F) {
	for _, s := range []string{
		`{"stream":"stdout","data":"a"}` + "\n" + `{"exit":0}` + "\n",
		`{"stream":"stderr","data":"\ufffd","data_b64":"/w=="}` + "\n" + `{"exit":126,"signal":"SIGKILL"}`,
		"\n\n\r\n", `{"exit":null}`, `{"stream":1}`, `[{"exit":0}]`, "{\"exit\":0\n}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		events := 0
		final, err := readStream(bytes.NewReader(data), 4096, func(e StreamEvent) {
			if e.Stream == "" {
				t.Fatal("event without a stream")
			}
			_ = e.Bytes()
			events++
		})
		if (final == nil) == (err == nil) {
			t.Fatalf("result %v and error %v", final, err)
		}
		if err != nil {
			var we *Error
			if !errors.As(err, &we) || we.Kind != KindProtocol {
				t.Fatalf("error %v (%T), want a protocol *Error", err, err)
			}
		}
	})
}
