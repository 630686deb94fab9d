package wire

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

// outputLimit is the agent's default output_limit (exec.DefaultOutputLimit,
// which wire does not import).
const outputLimit = 16 << 20

// split cuts b into pieces of at most size bytes, as the runner keeps
// output.
func split(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(size, len(b))
		out = append(out, b[:k:k])
		b = b[k:]
	}
	return out
}

func repeat(s string, n int) []byte { return bytes.Repeat([]byte(s), n) }

func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// The encoding policy (output.go, docs/DEVELOPER.md): which fields carry a
// stream, and what its text says, on both sides of the size threshold.
func TestOutputPolicy(t *testing.T) {
	big := SmallOutput + 1
	// Valid text whose escaped form is exactly as long as base64, then one
	// character longer: n = 3k bytes, base64 4k; each '\n' adds one.
	border := func(extra int) []byte {
		n := 3 * ((big + 2) / 3)
		b := repeat("a", n)
		for i := range n/3 + extra {
			b[i*2] = '\n'
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		text     string // the text field
		textSame bool   // ... which is the data itself
		b64      bool   // a base64 field is there
	}{
		{name: "empty", data: nil, textSame: true},
		{name: "text", data: []byte("deployed v2\nall good\n"), textSame: true},
		{name: "text with a few control bytes", data: []byte("\x1b[31mred\x1b[0m\tand\r\n\x00"), textSame: true},
		{name: "large text", data: repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n", 4096), textSame: true},
		{name: "large text with a few control bytes", data: append(repeat("line\tof \"text\"\n", 8192), "\x00\x07\x1b"...), textSame: true},
		{name: "large text in another script", data: repeat("сообщение 日本語 ✓\n", 8192), textSame: true},
		{name: "small NUL bytes", data: make([]byte, SmallOutput), textSame: true},
		{name: "large NUL bytes", data: make([]byte, big), b64: true},
		{name: "large U+2028", data: repeat("\u2028", big/3+1), b64: true},
		{name: "large backslashes", data: repeat(`\`, big), b64: true},
		{name: "escaped as long as base64", data: border(0), textSame: true},
		{name: "escaped one longer than base64", data: border(1), b64: true},
		{name: "small invalid UTF-8", data: []byte("\xff\xfeok\x80\n"), text: "\uFFFD\uFFFDok\uFFFD\n", b64: true},
		{name: "small cut character", data: []byte("ab\xe2\x82"), text: "ab\uFFFD\uFFFD", b64: true},
		{name: "large invalid UTF-8", data: randomBytes(1, big), b64: true},
		{name: "large text cut at the limit inside a character", data: append(repeat("a", big), 0xe2), b64: true},
		{name: "large text, one invalid byte", data: append(append(repeat("a", big), 0xff), "tail"...), b64: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.textSame {
				tc.text = string(tc.data)
			}
			text, b64 := encodeOutput(tc.data)
			if text != tc.text {
				t.Errorf("text: %.80q…, want %.80q…", text, tc.text)
			}
			if (b64 != "") != tc.b64 {
				t.Errorf("base64 field present: %v, want %v", b64 != "", tc.b64)
			}
			if b64 != "" && b64 != base64.StdEncoding.EncodeToString(tc.data) {
				t.Error("base64 field is not the exact bytes")
			}
			// The same decision over the runner's chunks, cut anywhere.
			for _, size := range []int{1, 2, 3, 7, 4096, 65536} {
				f := formOf(split(tc.data, size), newTextEncoder())
				if f.text != (text != "" || !f.b64) || f.b64 != tc.b64 {
					t.Errorf("chunks of %d: form %+v, want text %v, base64 %v", size, f, text != "" || !tc.b64, tc.b64)
				}
			}
			checkRoundTrip(t, tc.data)
		})
	}
}

// checkRoundTrip sends data on stdout (and its reverse on stderr) through
// WriteRunAnswer and through a stream (Output events, FinalAnswer), and
// reads each back with the client's decoders: the exact bytes come back,
// every answer is valid JSON in UTF-8 (what a Perl dispatcher reads), and
// the same bytes as the encoding/json path (SetOutput, WriteJSON, Event,
// Final) give.
func checkRoundTrip(t *testing.T, data []byte) {
	t.Helper()
	rev := bytes.Clone(data)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	resp := RunResponse{Script: "s<&>", Exit: 3, ReqID: "r\x00\xff", Truncated: true, Signal: "SIGKILL", DurationMS: 12, Error: "killed by SIGKILL"}
	a := &RunAnswer{Response: resp, Stdout: split(data, 5), Stderr: split(rev, 65536)}

	rec := httptest.NewRecorder()
	if err := WriteRunAnswer(rec, a); err != nil {
		t.Fatal(err)
	}
	body := rec.Body.Bytes()
	if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Fatalf("Content-Length %s for %d bytes", cl, len(body))
	}
	if !utf8.Valid(body) || !json.Valid(body) {
		t.Fatalf("answer is not valid JSON in UTF-8: %.200q", body)
	}
	want := resp
	want.SetOutput(data, rev)
	old := httptest.NewRecorder()
	WriteJSON(old, http.StatusOK, want)
	if !bytes.Equal(body, old.Body.Bytes()) {
		t.Fatalf("WriteRunAnswer and WriteJSON differ:\n%.300q\n%.300q", body, old.Body.Bytes())
	}
	var got RunResponse
	if err := decodeAnswer(bytes.NewReader(body), DefaultMaxResponseSize, &got); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := got.Output()
	if !bytes.Equal(stdout, data) || !bytes.Equal(stderr, rev) {
		t.Fatalf("plain answer: the output did not come back exactly")
	}

	rec = httptest.NewRecorder()
	sw := NewStreamWriter(rec)
	oldRec := httptest.NewRecorder()
	oldSW := NewStreamWriter(oldRec)
	for _, c := range split(data, 4096) {
		if err := sw.Output("stdout", c); err != nil {
			t.Fatal(err)
		}
		_ = oldSW.Event(NewStreamEvent("stdout", c))
	}
	if err := sw.FinalAnswer(a); err != nil {
		t.Fatal(err)
	}
	_ = oldSW.Final(want)
	if err := sw.Output("stdout", []byte("late")); err != ErrStreamDone {
		t.Fatalf("Output after FinalAnswer: %v", err)
	}
	if !bytes.Equal(rec.Body.Bytes(), oldRec.Body.Bytes()) {
		t.Fatalf("stream written from raw bytes and from events differ")
	}
	var events []byte
	res, err := readStream(bytes.NewReader(rec.Body.Bytes()), DefaultMaxResponseSize, func(e StreamEvent) { events = append(events, e.Bytes()...) })
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr = res.Output()
	if !bytes.Equal(events, data) || !bytes.Equal(stdout, data) || !bytes.Equal(stderr, rev) {
		t.Fatalf("stream: the output did not come back exactly")
	}
}

// Any bytes, cut into chunks anywhere (a character split between two
// chunks included), are written as encoding/json writes them.
func TestRunAnswerSameAsEncodingJSON(t *testing.T) {
	inputs := [][]byte{
		[]byte("\u2028\u2029 \"q\" \\ <a&b> \x7f \b\f\n\r\t\x01\x1f é 日本 🙂"),
		[]byte("\xe2\x82\xac\xe2\x82\xe2\xf0\x9f\x99\x82\xf0\x9f\x99\xed\xa0\x80\xc0\xaf\xf8\x88\x80\x80\x80"),
	}
	for seed := range uint64(20) {
		// Mostly text with bits of everything.
		r := rand.New(rand.NewPCG(seed, 2))
		var b []byte
		for range 2000 {
			switch r.IntN(6) {
			case 0:
				b = append(b, byte(r.IntN(256)))
			case 1:
				b = utf8.AppendRune(b, rune(r.IntN(0x110000)))
			default:
				b = append(b, "abc de\n"[r.IntN(7)])
			}
		}
		inputs = append(inputs, b)
	}
	for i, data := range inputs {
		for _, size := range []int{1, 2, 3, 5, 64, 4096} {
			t.Run(fmt.Sprintf("input %d in chunks of %d", i, size), func(t *testing.T) {
				a := &RunAnswer{Response: RunResponse{Script: "x", ReqID: "y"}, Stdout: split(data, size), Stderr: split(data, size+1)}
				rec := httptest.NewRecorder()
				if err := WriteRunAnswer(rec, a); err != nil {
					t.Fatal(err)
				}
				want := a.Response
				want.SetOutput(data, data)
				old := httptest.NewRecorder()
				WriteJSON(old, http.StatusOK, want)
				if d := cmp.Diff(old.Body.String(), rec.Body.String()); d != "" {
					t.Errorf("(-WriteJSON +WriteRunAnswer):\n%s", d)
				}
			})
		}
	}
}

// The largest answer for the default output_limit, whatever the script
// writes, fits in DefaultMaxResponseSize with room to spare, and the real
// Client takes it, plain and streamed, to the exact bytes.
func TestRunAnswerWorstCaseFits(t *testing.T) {
	if testing.Short() {
		t.Skip("16 MiB streams")
	}
	// (Other bytes that escape long, quotes or U+2028, go to base64 as NUL
	// bytes do: TestOutputPolicy.)
	worst := map[string][]byte{
		"NUL bytes":     make([]byte, outputLimit),
		"invalid UTF-8": repeat("\xff", outputLimit),
		"random":        randomBytes(3, outputLimit),
		// Text just short of base64's length: the largest text-only form.
		"text at the border": func() []byte {
			b := repeat("a", outputLimit/3*3)
			for i := 0; i < len(b)/3; i++ {
				b[3*i] = '\n'
			}
			return b
		}(),
	}
	// The largest form of one stream; an answer has two and a few
	// fields.
	largest := 0
	for name, data := range worst {
		f := formOf(split(data, 65536), newTextEncoder())
		text, b64 := f.jsonLen()
		t.Logf("%s: %.2f MiB (text %v, base64 %v)", name, float64(text+b64)/(1<<20), f.text, f.b64)
		largest = max(largest, text+b64)
	}
	// 4/3 of the stream and the quotes.
	if limit := base64.StdEncoding.EncodedLen(outputLimit) + 4; largest > limit {
		t.Errorf("largest stream takes %d bytes, want at most %d", largest, limit)
	}
	nul := worst["NUL bytes"]
	a := &RunAnswer{Response: RunResponse{Script: "flood", Exit: 7, ReqID: "r", Truncated: true, Signal: "SIGKILL",
		Error: strings.Repeat("e", 1000)}, Stdout: split(nul, 65536), Stderr: split(nul, 65536)}
	answer := planRun(a, newTextEncoder()).size
	if answer < int64(2*largest) || answer > int64(2*largest+2048) {
		t.Errorf("answer of %d bytes for two streams of at most %d each", answer, largest)
	}
	if answer > DefaultMaxResponseSize*3/4 {
		t.Errorf("largest answer %.1f MiB leaves less than a quarter of DefaultMaxResponseSize (%d MiB) free", float64(answer)/(1<<20), DefaultMaxResponseSize>>20)
	}

	// Through the real Client (the final line of a stream is the same
	// JSON; hostile_output.txtar sends both through the real binaries).
	ca := pkitest.NewCA(t)
	random := worst["random"]
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = WriteRunAnswer(w, &RunAnswer{Response: RunResponse{Script: "flood", Exit: 7, ReqID: "r", Truncated: true},
			Stdout: split(nul, 65536), Stderr: split(random, 65536)})
	})
	srv := startAgent(t, ca, "web-01", agentOpts{handler: h})
	c := newClient(t, ca, func(cfg *ClientConfig) { cfg.ReadTimeout = time.Minute }) // slow under the race detector
	res, err := c.Run(context.Background(), srv.target, RunRequest{Script: "flood"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := res.Output()
	if res.Exit != 7 || !res.Truncated || !bytes.Equal(stdout, nul) || !bytes.Equal(stderr, random) {
		t.Errorf("exit %d, truncated %v, %d and %d bytes; want 7, true, the exact %d bytes of each",
			res.Exit, res.Truncated, len(stdout), len(stderr), outputLimit)
	}
}

// discardResponse is an http.ResponseWriter that counts the body and keeps
// nothing, so that what an answer allocates is the encoder's alone.
type discardResponse struct {
	h http.Header
	n int64
}

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) WriteHeader(int)             {}
func (d *discardResponse) Write(b []byte) (int, error) { d.n += int64(len(b)); return len(b), nil }
func (d *discardResponse) Flush()                      {}

// Writing an answer allocates a few buffers, never anything that grows
// with the output: 2 × 4 MiB of NUL bytes (which escaped would be 48 MiB)
// or of text are written with well under 1 MiB allocated, plain and
// streamed (an event per chunk, then the result).
func TestRunAnswerAllocations(t *testing.T) {
	const size = 4 << 20
	nul := make([]byte, size)
	text := repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n", size/64)
	for name, data := range map[string][]byte{"NUL bytes": nul, "text": text} {
		a := &RunAnswer{Response: RunResponse{Script: "flood", Truncated: true}, Stdout: split(data, 65536), Stderr: split(data, 65536)}
		for _, streamed := range []bool{false, true} {
			w := &discardResponse{h: http.Header{}}
			n := allocatedBy(func() {
				var err error
				if streamed {
					sw := NewStreamWriter(w)
					for _, c := range a.Stdout {
						if err = sw.Output("stdout", c); err != nil {
							break
						}
					}
					err = sw.FinalAnswer(a)
				} else {
					err = WriteRunAnswer(w, a)
				}
				if err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%s, streamed %v: %d bytes written, %d KiB allocated", name, streamed, w.n, n>>10)
			if n > 1<<20 {
				t.Errorf("%s, streamed %v: %.1f MiB allocated to write %.1f MiB, want under 1 MiB", name, streamed, float64(n)/(1<<20), float64(w.n)/(1<<20))
			}
		}
	}
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// An answer cut short by the connection reports the error.
func TestWriteRunAnswerWriteError(t *testing.T) {
	a := &RunAnswer{Stdout: split(make([]byte, 1<<20), 65536)}
	w := &failingResponse{h: http.Header{}, left: 100 << 10}
	if err := WriteRunAnswer(w, a); err == nil || !strings.Contains(err.Error(), "connection gone") {
		t.Errorf("error %v, want the connection's", err)
	}
}

var errConnGone = errors.New("connection gone")

// failingResponse accepts left bytes, then fails as a closed connection.
type failingResponse struct {
	h    http.Header
	left int
}

func (f *failingResponse) Header() http.Header { return f.h }
func (f *failingResponse) WriteHeader(int)     {}
func (f *failingResponse) Write(b []byte) (int, error) {
	if len(b) > f.left {
		n := f.left
		f.left = 0
		return n, errConnGone
	}
	f.left -= len(b)
	return len(b), nil
}

// BenchmarkWriteRunAnswer encodes a /run answer with 16 MiB on each stream
// (the default output_limit) to a connection that discards it.
func BenchmarkWriteRunAnswer(b *testing.B) {
	for name, data := range map[string][]byte{
		"text":   repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n", outputLimit/64),
		"nul":    make([]byte, outputLimit),
		"random": randomBytes(4, outputLimit),
	} {
		b.Run(name, func(b *testing.B) {
			a := &RunAnswer{Response: RunResponse{Script: "flood", Truncated: true}, Stdout: split(data, 65536), Stderr: split(data, 65536)}
			w := &discardResponse{h: http.Header{}}
			b.SetBytes(2 * outputLimit)
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteRunAnswer(w, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
