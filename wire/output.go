package wire

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// How a script's output travels in JSON (docs/DEVELOPER.md, "Run output on
// the wire"). Each stream — stdout, stderr, or the data of one stream
// event — is judged on its own, over all its bytes:
//
//   - text only ("stdout"): the bytes are valid UTF-8 and either the
//     stream is small (at most SmallOutput bytes) or its JSON-escaped form
//     is no longer than base64 would be (4 characters for 3 bytes, rounded
//     up). This is all ordinary text.
//   - text and base64: a small stream that is not valid UTF-8. "stdout"
//     holds it with each invalid byte replaced by U+FFFD (what a Perl
//     dispatcher or a person can read), "stdout_b64" the exact bytes.
//   - base64 only: a larger stream that is not valid UTF-8, or whose
//     escaped form is longer than base64 (control bytes, which JSON escapes
//     as \u0000, six characters for one byte). "stdout" is "".
//
// So a stream never takes more than 4/3 of its size in the answer, plus
// a constant for small streams (at most 384 KiB: 64 KiB of control bytes
// escaped as \u0000), and the largest /run answer is 2 × 4/3 ×
// output_limit and a few KiB of other fields: 42.7 MiB for the default
// output_limit of 16 MiB per stream, which DefaultMaxResponseSize (65 MiB)
// covers with a third of margin. An answer or stream line beyond it is
// refused by the dispatcher, so an output_limit over about 24 MiB can
// lose results of binary output.

// SmallOutput is the size up to which a stream always has a text form in
// the JSON (lossy when it is not valid UTF-8, with the exact bytes in
// base64 beside it).
const SmallOutput = 64 << 10

// outputForm is how one stream is encoded.
type outputForm struct {
	n       int  // bytes of output
	text    bool // the text field holds them (lossily when b64 is set too)
	b64     bool // the base64 field holds them exactly
	textLen int  // escaped length of the text, quotes excluded, when text
}

// jsonLen is the length of the text field's value (quotes included) and
// of the base64 field's value (quotes included, 0 when absent).
func (f outputForm) jsonLen() (text, b64 int) {
	text = 2
	if f.text {
		text += f.textLen
	}
	if f.b64 {
		b64 = 2 + base64.StdEncoding.EncodedLen(f.n)
	}
	return text, b64
}

// formOf decides the encoding of the concatenation of chunks, escaping
// them through e to measure their text form (and stopping as soon as the
// answer is base64 only).
func formOf(chunks [][]byte, e *textEncoder) outputForm {
	f := outputForm{}
	for _, c := range chunks {
		f.n += len(c)
	}
	small := f.n <= SmallOutput
	limit := base64.StdEncoding.EncodedLen(f.n)
	n := 0
	valid, complete := e.escape(chunks, func(piece []byte) bool {
		n += len(piece)
		// A larger stream goes as base64 alone once it cannot be text only.
		return small || (!e.invalid && n <= limit)
	})
	switch {
	case valid && complete:
		f.text, f.textLen = true, n
	case small:
		f.text, f.b64, f.textLen = true, true, n
	default:
		f.b64 = true
	}
	return f
}

// encodeOutput returns the text and base64 fields for b, as formOf
// decides them.
func encodeOutput(b []byte) (text, b64 string) {
	var f outputForm
	if len(b) <= SmallOutput {
		// No need to measure: a small stream always has a text form.
		f = outputForm{n: len(b), text: true, b64: !utf8.Valid(b)}
	} else {
		f = formOf([][]byte{b}, newTextEncoder())
	}
	switch {
	case f.text && !f.b64:
		return string(b), ""
	case f.text:
		return lossyText(b), base64.StdEncoding.EncodeToString(b)
	default:
		return "", base64.StdEncoding.EncodeToString(b)
	}
}

// lossyText returns b with each byte that is not part of a valid UTF-8
// sequence replaced by U+FFFD, in one pass.
func lossyText(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

func decodeOutput(text, b64 string) []byte {
	if b64 != "" {
		if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
			return b
		}
	}
	return []byte(text)
}

// escapeBlock is how many bytes of output textEncoder escapes at once.
const escapeBlock = 4 << 10

// textEncoder escapes output as the content of a JSON string, as
// encoding/json does with SetEscapeHTML(false) (\" \\ \n \r \t \b \f,
// \u00XX for other control bytes, \u2028 and \u2029), except that a byte
// that is not part of valid UTF-8 becomes U+FFFD itself rather than its
// escape. It works through fixed buffers, so escaping any amount of output
// allocates nothing.
type textEncoder struct {
	src     [escapeBlock]byte
	dst     []byte
	invalid bool // a byte that is not valid UTF-8 was met
}

func newTextEncoder() *textEncoder {
	// At most six characters for one byte (\u0000).
	return &textEncoder{dst: make([]byte, 0, 6*escapeBlock)}
}

// escape escapes the concatenation of chunks block by block, a character
// cut between two chunks included, and calls emit with each escaped block
// (valid until the next call). It stops early when emit returns false.
// valid says whether every byte seen was valid UTF-8; complete whether all
// of them were seen.
func (e *textEncoder) escape(chunks [][]byte, emit func(piece []byte) bool) (valid, complete bool) {
	e.invalid = false
	n := 0 // bytes waiting in e.src
	ci, off := 0, 0
	for {
		for n < len(e.src) && ci < len(chunks) {
			k := copy(e.src[n:], chunks[ci][off:])
			n += k
			off += k
			if off == len(chunks[ci]) {
				ci, off = ci+1, 0
			}
		}
		eof := ci == len(chunks)
		out, used := e.appendEscaped(e.dst[:0], e.src[:n], eof)
		e.dst = out[:0]
		if len(out) > 0 && !emit(out) {
			return !e.invalid, false
		}
		n = copy(e.src[:], e.src[used:n])
		if eof {
			return !e.invalid, true // at the end everything is used
		}
	}
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends the escaped form of src to dst. Unless eof, a
// UTF-8 sequence that src ends in the middle of is left for the next call:
// used says how many bytes were consumed.
func (e *textEncoder) appendEscaped(dst, src []byte, eof bool) (_ []byte, used int) {
	i := 0
	for i < len(src) {
		c := src[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				j := i + 1
				for j < len(src) && src[j] < utf8.RuneSelf && src[j] >= 0x20 && src[j] != '"' && src[j] != '\\' {
					j++
				}
				dst = append(dst, src[i:j]...)
				i = j
				continue
			}
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		if !eof && !utf8.FullRune(src[i:]) {
			break
		}
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			e.invalid = true
			dst = append(dst, "\uFFFD"...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, src[i:i+size]...)
		}
		i += size
	}
	return dst, i
}

// RunAnswer is an agent's answer to POST /run before it is encoded: the
// response fields and each stream's output as raw bytes, in the pieces the
// runner kept them in. [WriteRunAnswer] and [StreamWriter.FinalAnswer]
// encode it straight from those pieces, with the same bytes as
// [RunResponse.SetOutput] and [WriteJSON] would give, without ever holding
// the encoded answer (or a copy of the output) in memory.
type RunAnswer struct {
	Response RunResponse // its Stdout, Stderr, StdoutB64 and StderrB64 are ignored
	Stdout   [][]byte
	Stderr   [][]byte
}

// answerPart is a piece of an encoded answer: literal bytes, or output as
// escaped text (without quotes) or base64.
type answerPart struct {
	lit  []byte
	out  [][]byte
	text bool
	b64  bool
}

// answerPlan is an answer cut into parts, with its exact encoded length.
type answerPlan struct {
	parts []answerPart
	size  int64
	esc   *textEncoder
}

func (p *answerPlan) lit(b []byte) {
	if n := len(p.parts); n > 0 && p.parts[n-1].out == nil {
		p.parts[n-1].lit = append(p.parts[n-1].lit, b...)
	} else {
		p.parts = append(p.parts, answerPart{lit: append([]byte(nil), b...)})
	}
	p.size += int64(len(b))
}

func (p *answerPlan) str(s string) { p.lit(jsonString(s)) }

// output adds a stream's text field value (key already written) and
// returns its form, for the base64 field.
func (p *answerPlan) output(out [][]byte) outputForm {
	f := formOf(out, p.esc)
	textLen, _ := f.jsonLen()
	p.lit([]byte{'"'})
	if f.text && f.n > 0 {
		p.parts = append(p.parts, answerPart{out: out, text: true})
	}
	p.lit([]byte{'"'})
	p.size += int64(textLen - 2)
	return f
}

// b64 adds `,"KEY":"BASE64"` when f has a base64 form.
func (p *answerPlan) b64(key string, out [][]byte, f outputForm) {
	if !f.b64 {
		return
	}
	p.lit([]byte(`,"` + key + `":"`))
	p.parts = append(p.parts, answerPart{out: out, b64: true})
	p.lit([]byte{'"'})
	_, b64Len := f.jsonLen()
	p.size += int64(b64Len - 2)
}

// planRun lays out a RunResponse with the output of a, in RunResponse's
// field order, as encoding/json writes it.
func planRun(a *RunAnswer, esc *textEncoder) *answerPlan {
	r := &a.Response
	p := &answerPlan{esc: esc}
	p.lit([]byte(`{"script":`))
	p.str(r.Script)
	p.lit([]byte(`,"exit":` + strconv.Itoa(r.Exit) + `,"stdout":`))
	fo := p.output(a.Stdout)
	p.lit([]byte(`,"stderr":`))
	fe := p.output(a.Stderr)
	p.b64("stdout_b64", a.Stdout, fo)
	p.b64("stderr_b64", a.Stderr, fe)
	p.lit([]byte(`,"reqid":`))
	p.str(r.ReqID)
	if r.Truncated {
		p.lit([]byte(`,"truncated":true`))
	}
	if r.Signal != "" {
		p.lit([]byte(`,"signal":`))
		p.str(r.Signal)
	}
	if r.DurationMS != 0 {
		p.lit([]byte(`,"duration_ms":` + strconv.FormatInt(r.DurationMS, 10)))
	}
	if r.Error != "" {
		p.lit([]byte(`,"error":`))
		p.str(r.Error)
	}
	p.lit([]byte("}\n"))
	return p
}

// planEvent lays out a StreamEvent line for data, as encoding/json writes
// NewStreamEvent(stream, data).
func planEvent(stream string, data []byte, esc *textEncoder) *answerPlan {
	p := &answerPlan{esc: esc}
	out := [][]byte{data}
	p.lit([]byte(`{"stream":`))
	p.str(stream)
	p.lit([]byte(`,"data":`))
	f := p.output(out)
	p.b64("data_b64", out, f)
	p.lit([]byte("}\n"))
	return p
}

// writeTo writes the planned answer to w, which should be buffered, and
// checks that exactly size bytes were written.
func (p *answerPlan) writeTo(w io.Writer) error {
	cw := &countingWriter{w: w}
	for _, part := range p.parts {
		switch {
		case part.text:
			p.esc.escape(part.out, func(piece []byte) bool {
				_, err := cw.Write(piece)
				return err == nil
			})
		case part.b64:
			enc := base64.NewEncoder(base64.StdEncoding, cw)
			for _, c := range part.out {
				if _, err := enc.Write(c); err != nil {
					break
				}
			}
			_ = enc.Close() // an error is the writer's, kept in cw
		default:
			_, _ = cw.Write(part.lit)
		}
		if cw.err != nil {
			return cw.err
		}
	}
	if cw.n != p.size {
		return fmt.Errorf("wire: encoded %d bytes, planned %d", cw.n, p.size)
	}
	return nil
}

// countingWriter counts what goes through and keeps the first error.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
	return n, err
}

// answerBuffer is the size of the buffer answers are written through.
const answerBuffer = 32 << 10

// answerBufs are the encoder and the write buffer of one answer, reused
// from answer to answer: without the pool every run, however small its
// output, cost the agent 60 KiB of garbage.
type answerBufs struct {
	enc *textEncoder
	bw  *bufio.Writer
}

var answerPool = sync.Pool{New: func() any {
	return &answerBufs{enc: newTextEncoder(), bw: bufio.NewWriterSize(nil, answerBuffer)}
}}

// WriteRunAnswer answers a /run request with a as plain JSON (200, with a
// Content-Length): the same bytes as WriteJSON of a.Response with
// SetOutput(a.Stdout, a.Stderr) joined, but the length is computed first
// and the JSON written straight from a's pieces through a small buffer, so
// that neither the answer nor a copy of the output is ever held in memory.
// An error is the connection's (the dispatcher went away).
func WriteRunAnswer(w http.ResponseWriter, a *RunAnswer) error {
	bufs := answerPool.Get().(*answerBufs)
	defer func() {
		bufs.bw.Reset(nil) // drop the connection, keep the buffer
		answerPool.Put(bufs)
	}()
	p := planRun(a, bufs.enc)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.FormatInt(p.size, 10))
	w.WriteHeader(http.StatusOK)
	bufs.bw.Reset(w)
	if err := p.writeTo(bufs.bw); err != nil {
		return err
	}
	return bufs.bw.Flush()
}

// jsonString is s as encoding/json writes a string with
// SetEscapeHTML(false).
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
