package exec

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
)

// line is what the chunk tests' scripts print, over and over: 64 bytes.
const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n"

// With Chunked, 64 MiB of output with a limit of 4 MiB and a bit is kept
// in full chunks and one partial one, exactly, and keeping it allocates
// the limit and a few chunks at most: no buffer grows by reallocation,
// nothing is copied at the end. OnOutput sees the same bytes, in the
// chunks' own memory.
func TestChunkedCapture(t *testing.T) {
	const total = 64 << 20
	const limit = 4<<20 + 100
	script := writeScript(t, t.TempDir(), "lines.sh", `yes `+line[:len(line)-1]+` | head -c `+strconv.Itoa(total)+`
echo err >&2`)
	var streamed []byte
	var calls, biggest int
	var views [][]byte
	req := Request{Entry: Entry{Name: "lines", Path: script}, OutputLimit: limit, Chunked: true,
		OnOutput: func(stream string, data []byte) {
			if stream == "stdout" {
				calls++
				biggest = max(biggest, len(data))
				views = append(views, data)
			}
		}}
	var res *Result
	n := allocated(func() { res = mustRun(t, context.Background(), testRunner(), req) })
	defer res.Release()
	t.Logf("allocated %.2f MiB to keep %.2f MiB", float64(n)/(1<<20), float64(limit)/(1<<20))
	if res.Exit != 0 || res.Error != "" || !res.Truncated {
		t.Fatalf("Exit %d, Error %q, Truncated %v; want 0, \"\", true", res.Exit, res.Error, res.Truncated)
	}
	if res.Stdout != nil || res.Stderr != nil {
		t.Errorf("Stdout and Stderr hold %d and %d bytes, want nil with Chunked", len(res.Stdout), len(res.Stderr))
	}
	want := bytes.Repeat([]byte(line), limit/len(line)+1)[:limit]
	if got := res.StdoutChunks.Bytes(); res.StdoutChunks.Len() != limit || !bytes.Equal(got, want) {
		t.Errorf("kept %d bytes of stdout, want the first %d bytes of the output exactly", res.StdoutChunks.Len(), limit)
	}
	chunks := res.StdoutChunks.Chunks()
	if len(chunks) != limit/ChunkSize+1 {
		t.Errorf("%d chunks, want %d", len(chunks), limit/ChunkSize+1)
	}
	for i, c := range chunks {
		if size := len(c); (i < len(chunks)-1 && size != ChunkSize) || (i == len(chunks)-1 && size != limit%ChunkSize) {
			t.Errorf("chunk %d holds %d bytes", i, size)
		}
	}
	if got := string(res.StderrChunks.Bytes()); got != "err\n" {
		t.Errorf("stderr %q, want %q", got, "err\n")
	}
	for _, v := range views {
		streamed = append(streamed, v...) // after Run: the views stay valid until Release
	}
	if !bytes.Equal(streamed, want) || biggest > ChunkSize {
		t.Errorf("OnOutput got %d bytes (%d calls, the largest %d bytes), want the kept %d in calls of at most %d", len(streamed), calls, biggest, limit, ChunkSize)
	}
	// The kept bytes, the chunk the rest was read into, and the run's own
	// few KiB (pipes, process, goroutines); the views OnOutput kept.
	if bound := uint64(limit + 3*ChunkSize + 256<<10 + calls*24); n > bound {
		t.Errorf("Run allocated %.2f MiB to keep %.2f MiB, want at most %.2f MiB", float64(n)/(1<<20), float64(limit)/(1<<20), float64(bound)/(1<<20))
	}
	res.Release()
	if res.StdoutChunks.Len() != 0 || res.StdoutChunks.Chunks() != nil {
		t.Error("output still there after Release")
	}
}

// Limits around chunk boundaries: the kept bytes, Truncated, and the same
// result with and without Chunked.
func TestCaptureLimits(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		out, limit int
		kept       int
		truncated  bool
	}{
		{out: 0, limit: 10, kept: 0},
		{out: 10, limit: 10, kept: 10},
		{out: 11, limit: 10, kept: 10, truncated: true},
		{out: ChunkSize, limit: ChunkSize, kept: ChunkSize},
		{out: ChunkSize + 1, limit: ChunkSize, kept: ChunkSize, truncated: true},
		{out: 3*ChunkSize + 5, limit: 2*ChunkSize + 1, kept: 2*ChunkSize + 1, truncated: true},
		{out: 3*ChunkSize + 5, limit: 4 * ChunkSize, kept: 3*ChunkSize + 5},
		{out: 100, limit: -1, kept: 0, truncated: true},
		{out: 100, limit: 1, kept: 1, truncated: true},
	} {
		script := writeScript(t, dir, fmt.Sprintf("out%d.sh", tc.out), `yes `+line[:len(line)-1]+` | head -c `+strconv.Itoa(tc.out))
		want := bytes.Repeat([]byte(line), tc.kept/len(line)+1)[:tc.kept]
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d bytes, limit %d, chunked %v", tc.out, tc.limit, chunked), func(t *testing.T) {
				res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "out", Path: script}, OutputLimit: int64(tc.limit), Chunked: chunked})
				defer res.Release()
				got := res.Stdout
				if chunked {
					got = res.StdoutChunks.Bytes()
					if res.Stdout != nil || res.StdoutChunks.Len() != tc.kept {
						t.Errorf("Stdout %d bytes, StdoutChunks %d; want nil and %d", len(res.Stdout), res.StdoutChunks.Len(), tc.kept)
					}
				} else if res.StdoutChunks != nil || (tc.kept == 0) != (res.Stdout == nil) || cap(res.Stdout) != tc.kept {
					t.Errorf("StdoutChunks %v, Stdout of %d bytes in %d; want nil and exactly %d", res.StdoutChunks, len(res.Stdout), cap(res.Stdout), tc.kept)
				}
				if !bytes.Equal(got, want) || res.Truncated != tc.truncated {
					t.Errorf("kept %d bytes (as printed: %v), Truncated %v; want %d, %v", len(got), bytes.Equal(got, want), res.Truncated, tc.kept, tc.truncated)
				}
			})
		}
	}
}
