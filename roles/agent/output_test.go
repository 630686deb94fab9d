package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/wire"
)

// Runs at once, plain and streamed, each printing megabytes of its own
// byte on stdout and on stderr: every answer holds exactly its own run's
// bytes (the output chunks go back to a shared pool once a run is
// answered, and are reused by the next), with the encoding the wire
// policy gives, and a plain answer's Content-Length is its length.
func TestRunOutputConcurrent(t *testing.T) {
	w := newWorld(t)
	const size = 1<<20 + 12345 // more than a few chunks, not a whole number of them
	script := filepath.Join(w.dir, "bin", "fill")
	write(t, script, fmt.Sprintf(`#!/bin/sh
head -c %d /dev/zero | tr '\000' "$1"
head -c %d /dev/zero | tr '\000' "$2" >&2
`, size, size), 0o755)
	w.allow(`fill = "` + script + `"` + "\n")
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	c := w.client(w.ca.Dispatcher(t))
	c.Timeout = time.Minute // twelve runs at once, slow under the race detector

	runs := []struct {
		out, err string // tr's notation of the byte on each stream
		b64      bool   // stdout travels as base64 (not text)
		stream   bool
	}{
		{out: "a", err: `\000`},
		{out: `\000`, err: "b", b64: true},
		{out: `\377`, err: "c", b64: true},
		{out: "d", err: `\001`, stream: true},
		{out: `\000`, err: `\377`, b64: true, stream: true},
		{out: "e", err: "f", stream: true},
	}
	for round := range 2 { // the second round reuses the first one's chunks
		var wg sync.WaitGroup
		for i, r := range runs {
			wg.Go(func() {
				want := func(spec string) []byte {
					b := []byte(strings.NewReplacer(`\000`, "\x00", `\001`, "\x01", `\377`, "\xff").Replace(spec))
					return bytes.Repeat(b, size)
				}
				name := fmt.Sprintf("round %d, run %d (%s, %s, streamed %v)", round, i, r.out, r.err, r.stream)
				res, events, err := runFill(w, c, r.out, r.err, r.stream)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				stdout, stderr := res.Output()
				if res.Exit != 0 || res.Truncated || !bytes.Equal(stdout, want(r.out)) || !bytes.Equal(stderr, want(r.err)) {
					t.Errorf("%s: exit %d (%q), truncated %v, %d and %d bytes; want 0, false and exactly %d bytes of each", name, res.Exit, res.Error, res.Truncated, len(stdout), len(stderr), size)
				}
				if (res.StdoutB64 != "") != r.b64 || (r.b64 && res.Stdout != "") {
					t.Errorf("%s: stdout as text %d bytes, as base64 %d; want base64 alone: %v", name, len(res.Stdout), len(res.StdoutB64), r.b64)
				}
				if r.stream && (!bytes.Equal(events["stdout"], want(r.out)) || !bytes.Equal(events["stderr"], want(r.err))) {
					t.Errorf("%s: events hold %d and %d bytes, not the output", name, len(events["stdout"]), len(events["stderr"]))
				}
			})
		}
		wg.Wait()
	}
}

// runFill runs fill OUT ERR and returns the result and, when streamed, the
// bytes of the stream events.
func runFill(w *world, c *http.Client, out, errOut string, stream bool) (*wire.RunResponse, map[string][]byte, error) {
	body, _ := json.Marshal(wire.RunRequest{Script: "fill", Args: []string{out, errOut}, ReqID: "r"})
	req, err := http.NewRequest(http.MethodPost, "https://"+w.addr+wire.PathRun, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if stream {
		req.Header.Set("Accept", wire.ContentTypeNDJSON)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if !stream {
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, nil, err
		}
		if resp.ContentLength != int64(len(data)) {
			return nil, nil, fmt.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(data))
		}
		var res wire.RunResponse
		return &res, nil, json.Unmarshal(data, &res)
	}
	events := map[string][]byte{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, wire.DefaultMaxResponseSize)
	for sc.Scan() {
		var line struct {
			wire.StreamEvent
			Exit *int `json:"exit"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, nil, err
		}
		if line.Exit != nil {
			var res wire.RunResponse
			return &res, events, json.Unmarshal(sc.Bytes(), &res)
		}
		events[line.Stream] = append(events[line.Stream], line.Bytes()...)
	}
	return nil, nil, fmt.Errorf("stream without a result: %v", sc.Err())
}
