package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// streamLine is one line of a streamed run: an event when Stream is set, the
// result when exit is present. The outer Exit hides RunResponse.Exit so
// that a missing exit can be told from exit 0.
type streamLine struct {
	StreamEvent
	RunResponse
	Exit *int `json:"exit"`
}

// readStream parses a streamed run (NDJSON): it calls onEvent (if not nil)
// for each output line and returns the result line. Lines longer than max
// bytes, lines that are not JSON objects and a stream that ends without a
// result are protocol *Errors; read errors are returned as they are. Blank
// lines and objects that are neither events nor results are skipped, so that
// later agents may add kinds of lines.
func readStream(r io.Reader, max int64, onEvent func(StreamEvent)) (*RunResponse, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if int64(len(line))+int64(len(chunk)) > max {
			return nil, protocolError("stream line larger than %s (lower output_limit on the agent)", sizeString(max))
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if res, perr := parseStreamLine(line, onEvent); perr != nil || res != nil {
			return res, perr
		}
		if err != nil { // io.EOF
			return nil, protocolError("stream ended without a result")
		}
		line = line[:0]
	}
}

func parseStreamLine(line []byte, onEvent func(StreamEvent)) (*RunResponse, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, nil
	}
	if line[0] != '{' {
		return nil, protocolError("bad stream line: not a json object")
	}
	var l streamLine
	if err := json.Unmarshal(line, &l); err != nil {
		return nil, protocolError("bad stream line: %v", err)
	}
	switch {
	case l.Exit != nil:
		res := l.RunResponse
		res.Exit = *l.Exit
		return &res, nil
	case l.Stream != "":
		if onEvent != nil {
			onEvent(l.StreamEvent)
		}
	}
	return nil, nil
}

// StreamWriter writes a streamed run (the answer to a /run request for
// which WantsStream is true): Content-Type application/x-ndjson, then one
// JSON object per line, each flushed at once: an event per chunk of output
// and one final result. The status (200) is sent with the first line.
// Every method is safe for concurrent use. Output and FinalAnswer encode
// straight from the raw output through one small buffer: neither an event
// nor the result (which repeats the whole output) is ever held whole in
// memory, as it is with Event and Final.
type StreamWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	bw      *bufio.Writer
	esc     *textEncoder
	started bool
	done    bool
	err     error
}

// ErrStreamDone is returned by Event, Output, Final and FinalAnswer after
// Final or FinalAnswer.
var ErrStreamDone = errors.New("stream already finished")

// NewStreamWriter prepares w for a streamed answer.
func NewStreamWriter(w http.ResponseWriter) *StreamWriter {
	w.Header().Set("Content-Type", ContentTypeNDJSON)
	return &StreamWriter{w: w, rc: http.NewResponseController(w)}
}

// Event writes a chunk of output. After a write error (the dispatcher went
// away) every call returns that error.
func (s *StreamWriter) Event(e StreamEvent) error {
	return s.write(false, func(w io.Writer) error { return encodeLine(w, e) })
}

// Output writes a chunk of output given as raw bytes: the same line as
// Event(NewStreamEvent(stream, data)), encoded straight from data.
func (s *StreamWriter) Output(stream string, data []byte) error {
	return s.write(false, func(w io.Writer) error { return planEvent(stream, data, s.encoder()).writeTo(w) })
}

// Final writes the result and ends the stream.
func (s *StreamWriter) Final(r RunResponse) error {
	return s.write(true, func(w io.Writer) error { return encodeLine(w, r) })
}

// FinalAnswer writes the result with the output of a, encoded straight
// from its pieces (the same line as Final of a.Response with the output
// set), and ends the stream.
func (s *StreamWriter) FinalAnswer(a *RunAnswer) error {
	return s.write(true, func(w io.Writer) error { return planRun(a, s.encoder()).writeTo(w) })
}

// encoder returns the text encoder of Output and FinalAnswer, made on
// first use. s.mu is held.
func (s *StreamWriter) encoder() *textEncoder {
	if s.esc == nil {
		s.esc = newTextEncoder()
	}
	return s.esc
}

func encodeLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // Encode ends the line with '\n'
		return fmt.Errorf("encode stream line: %w", err)
	}
	return nil
}

// write writes one line with encode, then flushes it to the dispatcher.
func (s *StreamWriter) write(final bool, encode func(io.Writer) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return ErrStreamDone
	}
	if s.err != nil {
		return s.err
	}
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(s.w, answerBuffer)
	}
	if final {
		s.done = true
	}
	if !s.started {
		s.started = true
		s.w.WriteHeader(http.StatusOK)
	}
	err := encode(s.bw)
	if err == nil {
		err = s.bw.Flush()
	}
	if err != nil {
		s.err = fmt.Errorf("write stream: %w", err)
		return s.err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = fmt.Errorf("flush stream: %w", err)
		return s.err
	}
	return nil
}
