package output

import (
	"bytes"
	"io"
	"sync"
)

// Streamer prints --stream output: every complete line as it arrives,
// prefixed by its host — "HOST: line" for stdout, "HOST [stderr]: line" for
// stderr. Lines of different hosts never mix within a line; a partial line
// waits for its newline (or Flush). It is safe for concurrent use.
type Streamer struct {
	mu      sync.Mutex
	w       io.Writer
	partial map[streamKey][]byte
	err     error
}

type streamKey struct{ host, stream string }

// maxPartial bounds a line kept waiting for its newline; a longer one is
// printed in pieces.
const maxPartial = 64 << 10

// NewStreamer returns a Streamer writing to w.
func NewStreamer(w io.Writer) *Streamer {
	return &Streamer{w: w, partial: make(map[streamKey][]byte)}
}

// Prefix is what starts each streamed line of host's stream ("stdout" or
// "stderr").
func Prefix(host, stream string) string {
	if stream == "stderr" {
		return host + " [stderr]: "
	}
	return host + ": "
}

// Write prints the complete lines of a chunk of host's stream and keeps
// the rest for the next chunk.
func (s *Streamer) Write(host, stream string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := streamKey{host, stream}
	buf := append(s.partial[k], data...)
	var out bytes.Buffer
	prefix := Prefix(host, stream)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		out.WriteString(prefix)
		out.Write(buf[:i+1])
		buf = buf[i+1:]
	}
	for len(buf) >= maxPartial {
		out.WriteString(prefix)
		out.Write(buf[:maxPartial])
		out.WriteByte('\n')
		buf = buf[maxPartial:]
	}
	if len(buf) == 0 {
		delete(s.partial, k)
	} else {
		s.partial[k] = append([]byte(nil), buf...)
	}
	s.write(out.Bytes())
}

// Flush prints what is left of host's streams as final lines.
func (s *Streamer) Flush(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out bytes.Buffer
	for _, stream := range []string{"stdout", "stderr"} {
		k := streamKey{host, stream}
		if buf := s.partial[k]; len(buf) > 0 {
			out.WriteString(Prefix(host, stream))
			out.Write(buf)
			out.WriteByte('\n')
		}
		delete(s.partial, k)
	}
	s.write(out.Bytes())
}

// Locked runs f while no line is being written, for output that must not
// land in the middle of one (a host's final status line).
func (s *Streamer) Locked(f func(w io.Writer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.w)
}

// Err returns the first write error.
func (s *Streamer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Streamer) write(b []byte) {
	if len(b) == 0 || s.err != nil {
		return
	}
	_, s.err = s.w.Write(b)
}
