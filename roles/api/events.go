package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
)

// outputEvent is the data of an output event: one line of a host's output.
type outputEvent struct {
	Host    string `json:"host"`
	Stream  string `json:"stream"`
	Data    string `json:"data"`
	DataB64 string `json:"data_b64,omitempty"`
}

// overflowEvent is the data of an overflow event.
type overflowEvent struct {
	Limit   int    `json:"limit"`
	Message string `json:"message"`
}

// sse writes a Server-Sent Events stream: each event is "event: KIND" and
// one "data:" line of JSON, flushed at once; comment lines keep a quiet
// stream open through proxies. It is safe for concurrent use.
type sse struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func newSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	s.write([]byte(": dispatcher run events\n\n"))
	return s
}

func (s *sse) write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
	}
	return s.err
}

// event writes one event of the log.
func (s *sse) event(ev control.Event) error {
	var data any
	switch ev.Kind {
	case control.EventOutput:
		data = outputEvent{Host: ev.Host, Stream: ev.Output.Stream, Data: ev.Output.Data, DataB64: ev.Output.DataB64}
	case control.EventResult:
		data = ev.Result
	case control.EventBatch:
		data = ev.Batch
	case control.EventOverflow:
		data = overflowEvent{Limit: control.MaxLiveOutput,
			Message: fmt.Sprintf("more than %d bytes of output: further lines are not streamed; each host's result carries its output", control.MaxLiveOutput)}
	case control.EventDone:
		data = newStatusBody(ev.Run)
	default:
		return nil
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "event: %s\ndata: ", ev.Kind)
	enc := json.NewEncoder(&buf) // one line: JSON never holds a raw newline
	enc.SetEscapeHTML(false)
	if err := enc.Encode(data); err != nil {
		return err
	}
	buf.WriteByte('\n')
	return s.write(buf.Bytes())
}

// keepAlive writes a comment line every d until ctx ends.
func (s *sse) keepAlive(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.write([]byte(": keep-alive\n\n")) != nil {
				return
			}
		}
	}
}

// handleEvents streams a run's events from its start: the live log of a
// run in flight here, else the stored record (re-read while another
// process runs it). The stream ends after the done event, when the client
// goes away, or — for a run of another process — when the API shuts down.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	run, live, err := s.lookup(r, actionStatus)
	if err != nil {
		fail(w, r, err)
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		fail(w, r, &httpError{status: http.StatusServiceUnavailable, retryAfter: busyRetryAfter,
			msg: fmt.Sprintf("too many event streams open: %d, the most this API serves at once; "+
				"poll GET /status/%s instead, or try again later", cap(s.streams), run.ReqID)})
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	out := newSSE(w)
	// The keep-alive writes to w: it must be over before the handler
	// returns and net/http finishes the response.
	var keep sync.WaitGroup
	keep.Go(func() { out.keepAlive(ctx, s.keepAliveEvery) })
	defer func() {
		cancel()
		keep.Wait()
	}()
	if live == nil {
		stop := context.AfterFunc(s.draining, cancel)
		defer stop()
		_ = control.FollowStored(ctx, s.o.Runs, run, s.pollEvery, out.event)
		return
	}
	log := live.Events()
	for n := 0; ; {
		evs, end, err := log.Wait(ctx, n)
		if err != nil {
			return
		}
		for _, ev := range evs {
			if out.event(ev) != nil {
				return
			}
		}
		n += len(evs)
		if end {
			return
		}
	}
}
