// Benchmarks of the wire encoding on the hot path of a run and a ping, in
// memory (no TLS, no sockets; BenchmarkPingWarm in client_test.go has the
// whole round trip): the client encoding a request as roundTrip does, the
// agent decoding it through LimitRequests and DecodeRequest, the agent
// writing an answer (WriteRunAnswer, or a StreamWriter with an event per
// piece of output and FinalAnswer), and the client reading it back
// (decodeAnswer, readStream). Each benchmark checks its result once before
// it is timed.
//
//	go test -run '^$' -bench . ./wire/
package wire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// benchPiece is the size of the pieces output is kept and streamed in, as
// the runner keeps it (exec.ChunkSize, which wire may not import).
const benchPiece = 64 << 10

// benchRunRequest is a typical /run request.
var benchRunRequest = RunRequest{
	Script:   "deploy",
	Args:     []string{"--env", "prod", "release 2024.06.1"},
	ReqID:    "3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b",
	Username: "ci bot",
	Token:    "tok-0123456789abcdef",
	Timeout:  300,
}

// benchOutputs are the outputs answers are benchmarked with: a line, and
// SmallOutput bytes of text and of binary (which the answer carries as
// text and base64 both, SmallOutput being the largest small stream).
var benchOutputs = []struct {
	name string
	data []byte
}{
	{"hello", []byte("hello\n")},
	{"text-64KiB", repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n", SmallOutput/64)},
	{"binary-64KiB", randomBytes(7, SmallOutput)},
}

// benchResponse is an http.ResponseWriter that keeps the body in buf, or
// discards it when buf is nil.
type benchResponse struct {
	h   http.Header
	buf *bytes.Buffer
}

func (w *benchResponse) Header() http.Header { return w.h }
func (w *benchResponse) WriteHeader(int)     {}
func (w *benchResponse) Flush()              {}
func (w *benchResponse) Write(b []byte) (int, error) {
	if w.buf != nil {
		return w.buf.Write(b)
	}
	return len(b), nil
}

// benchBody is a request body that can be read again after reset, without
// allocating.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// benchRequest returns a POST of body to path with the headers the client
// sends, and a function that rewinds its body for the next round.
func benchRequest(path string, body []byte) (*http.Request, func()) {
	bb := &benchBody{}
	r := &http.Request{
		Method:     http.MethodPost,
		Host:       "web-01.example.com:7443",
		RequestURI: path,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"User-Agent":   {DefaultUserAgent},
			"Content-Type": {"application/json"},
		},
		ContentLength: int64(len(body)),
		RemoteAddr:    "192.0.2.10:50123",
	}
	return r, func() {
		bb.Reset(body)
		r.Body = bb
	}
}

// benchDecoder returns the agent's way into a handler, LimitRequests in
// front of DecodeRequest into a fresh v, and the last decoding error.
func benchDecoder[T any](got *T) (http.Handler, *error) {
	var derr error
	h := LimitRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v T
		derr = DecodeRequest(r, &v)
		*got = v
	}))
	return h, &derr
}

// benchDecodeRequest measures the agent decoding want's JSON sent to
// path, once it has checked that it decodes to want.
func benchDecodeRequest[T any](b *testing.B, path string, want T) {
	body, err := json.Marshal(want)
	if err != nil {
		b.Fatal(err)
	}
	r, rewind := benchRequest(path, body)
	var got T
	h, derr := benchDecoder(&got)
	w := &benchResponse{h: http.Header{}}
	rewind()
	h.ServeHTTP(w, r)
	if *derr != nil {
		b.Fatalf("decode request: %v", *derr)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		b.Fatalf("decoded request (-want +got):\n%s", diff)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rewind()
		h.ServeHTTP(w, r)
		if *derr != nil {
			b.Fatal(*derr)
		}
	}
}

func BenchmarkRunRequest(b *testing.B) {
	b.Run("encode", func(b *testing.B) {
		out, err := json.Marshal(benchRunRequest)
		if err != nil {
			b.Fatal(err)
		}
		var back RunRequest
		if err := json.Unmarshal(out, &back); err != nil {
			b.Fatal(err)
		}
		if diff := cmp.Diff(benchRunRequest, back); diff != "" {
			b.Fatalf("encoded request decodes to another (-want +got):\n%s", diff)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(benchRunRequest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) { benchDecodeRequest(b, PathRun, benchRunRequest) })
}

func BenchmarkPingRequest(b *testing.B) {
	want := PingRequest{ReqID: "3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b"}
	b.Run("encode", func(b *testing.B) {
		out, err := json.Marshal(want)
		if err != nil {
			b.Fatal(err)
		}
		if string(out) != `{"reqid":"`+want.ReqID+`"}` {
			b.Fatalf("encoded ping request %s", out)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(want); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) { benchDecodeRequest(b, PathPing, want) })
}

func BenchmarkPingResponse(b *testing.B) {
	want := PingResponse{
		Status: "ok", Host: "web-01.example.com", Version: "2.0.0",
		Expiry: "Jun  7 16:28:00 2027 GMT", ExpiryISO: "2027-06-07T16:28:00Z",
		ReqID: "3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b",
	}
	var buf bytes.Buffer
	WriteJSON(&benchResponse{h: http.Header{}, buf: &buf}, http.StatusOK, want)
	body := slices.Clone(buf.Bytes())
	var got PingResponse
	if err := decodeAnswer(bytes.NewReader(body), DefaultMaxResponseSize, &got); err != nil {
		b.Fatal(err)
	}
	if got != want {
		b.Fatalf("ping response %+v, want %+v", got, want)
	}
	b.Run("write", func(b *testing.B) {
		w := &benchResponse{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			WriteJSON(w, http.StatusOK, want)
		}
	})
	b.Run("decode", func(b *testing.B) {
		rd := bytes.NewReader(body)
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(body)
			var got PingResponse
			if err := decodeAnswer(rd, DefaultMaxResponseSize, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchAnswer is the answer to benchRunRequest with data on stdout, kept in
// pieces as the runner keeps it, and a line on stderr.
func benchAnswer(data []byte) *RunAnswer {
	return &RunAnswer{
		Response: RunResponse{Script: benchRunRequest.Script, ReqID: benchRunRequest.ReqID, DurationMS: 12},
		Stdout:   split(data, benchPiece),
		Stderr:   [][]byte{[]byte("done in 12ms\n")},
	}
}

// writeStreamed writes a as a streamed run: an event per piece of output,
// then the result, as the agent does with a runner's OnOutput.
func writeStreamed(w http.ResponseWriter, a *RunAnswer) error {
	sw := NewStreamWriter(w)
	for _, p := range a.Stdout {
		if err := sw.Output("stdout", p); err != nil {
			return err
		}
	}
	for _, p := range a.Stderr {
		if err := sw.Output("stderr", p); err != nil {
			return err
		}
	}
	return sw.FinalAnswer(a)
}

// encodedAnswers returns a's plain and streamed encodings.
func encodedAnswers(b *testing.B, a *RunAnswer) (plain, streamed []byte) {
	b.Helper()
	var buf bytes.Buffer
	if err := WriteRunAnswer(&benchResponse{h: http.Header{}, buf: &buf}, a); err != nil {
		b.Fatal(err)
	}
	plain = slices.Clone(buf.Bytes())
	buf.Reset()
	if err := writeStreamed(&benchResponse{h: http.Header{}, buf: &buf}, a); err != nil {
		b.Fatal(err)
	}
	return plain, slices.Clone(buf.Bytes())
}

// checkRunResponse fails b unless r is a's response with a's output.
func checkRunResponse(b *testing.B, r *RunResponse, a *RunAnswer) {
	b.Helper()
	stdout, stderr := r.Output()
	if !bytes.Equal(stdout, bytes.Join(a.Stdout, nil)) || !bytes.Equal(stderr, bytes.Join(a.Stderr, nil)) {
		b.Fatalf("decoded output differs: %d bytes of stdout, %d of stderr", len(stdout), len(stderr))
	}
	got, want := *r, a.Response
	got.Stdout, got.Stderr, got.StdoutB64, got.StderrB64 = "", "", "", ""
	if diff := cmp.Diff(want, got); diff != "" {
		b.Fatalf("decoded response (-want +got):\n%s", diff)
	}
}

// BenchmarkRunAnswerWrite is the agent answering a run: json is
// WriteRunAnswer, stream an event per piece of output then FinalAnswer
// (which repeats the output). Each is checked by decoding it as the client
// does.
func BenchmarkRunAnswerWrite(b *testing.B) {
	for _, o := range benchOutputs {
		a := benchAnswer(o.data)
		plain, streamed := encodedAnswers(b, a)
		var r RunResponse
		if err := decodeAnswer(bytes.NewReader(plain), DefaultMaxResponseSize, &r); err != nil {
			b.Fatal(err)
		}
		checkRunResponse(b, &r, a)
		sr, err := readStream(bytes.NewReader(streamed), DefaultMaxResponseSize, nil)
		if err != nil {
			b.Fatal(err)
		}
		checkRunResponse(b, sr, a)

		b.Run("json/"+o.name, func(b *testing.B) {
			w := &benchResponse{h: http.Header{}}
			b.SetBytes(int64(len(o.data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteRunAnswer(w, a); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("stream/"+o.name, func(b *testing.B) {
			w := &benchResponse{h: http.Header{}}
			b.SetBytes(int64(len(o.data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := writeStreamed(w, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunAnswerDecode is the client reading a run's answer, as
// Client.Run does: decodeAnswer for plain JSON, readStream (with an
// onEvent that gathers the output) for a streamed one.
func BenchmarkRunAnswerDecode(b *testing.B) {
	for _, o := range benchOutputs {
		a := benchAnswer(o.data)
		plain, streamed := encodedAnswers(b, a)

		b.Run("json/"+o.name, func(b *testing.B) {
			rd := bytes.NewReader(plain)
			var r RunResponse
			if err := decodeAnswer(rd, DefaultMaxResponseSize, &r); err != nil {
				b.Fatal(err)
			}
			checkRunResponse(b, &r, a)
			b.SetBytes(int64(len(o.data)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(plain)
				var r RunResponse
				if err := decodeAnswer(rd, DefaultMaxResponseSize, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("stream/"+o.name, func(b *testing.B) {
			rd := bytes.NewReader(streamed)
			var events [][]byte
			onEvent := func(e StreamEvent) {
				if e.Stream == "stdout" {
					events = append(events, e.Bytes())
				}
			}
			r, err := readStream(rd, DefaultMaxResponseSize, onEvent)
			if err != nil {
				b.Fatal(err)
			}
			checkRunResponse(b, r, a)
			if !bytes.Equal(bytes.Join(events, nil), o.data) {
				b.Fatalf("stdout events hold %d bytes, want %d", len(bytes.Join(events, nil)), len(o.data))
			}
			b.SetBytes(int64(len(o.data)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(streamed)
				events = events[:0]
				if _, err := readStream(rd, DefaultMaxResponseSize, onEvent); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWantsStream is the agent choosing between a plain and a
// streamed answer for every run.
func BenchmarkWantsStream(b *testing.B) {
	r := &http.Request{Header: http.Header{"Accept": {ContentTypeNDJSON}}}
	if !WantsStream(r) {
		b.Fatal("Accept: " + ContentTypeNDJSON + " does not ask for a stream")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !WantsStream(r) {
			b.Fatal("no stream")
		}
	}
}
