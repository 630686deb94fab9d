package control

import (
	"bytes"
	"context"
	"sync"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Kinds of Event.
const (
	EventOutput   = "output"   // one line of a host's stdout or stderr
	EventResult   = "result"   // a host is done: its result
	EventBatch    = "batch"    // a batch of a rollout starts
	EventOverflow = "overflow" // the log stopped keeping output lines (MaxLiveOutput)
	EventDone     = "done"     // the run is over: its final record; always the last event
)

// MaxLiveOutput bounds the output kept in one run's event log. Past it,
// output lines are no longer logged (one EventOverflow says so); results,
// which carry each host's whole output, and the end still are.
const MaxLiveOutput = 8 << 20

// maxLine bounds a line kept waiting for its newline; a longer one is
// logged in pieces of this size.
const maxLine = 64 << 10

// Event is one entry of a run's event log.
type Event struct {
	Kind   string
	Index  int              // the host's index in the run's hosts (output, result)
	Host   string           // the host as given (output, result)
	Output wire.StreamEvent // EventOutput: one line, with its newline unless it is a last line without one
	Result store.Result     // EventResult
	Batch  BatchEvent       // EventBatch
	Run    store.Run        // EventDone: the final record
}

// EventLog is the ordered log of a run's events: output lines as agents
// send them (whole lines only, each host and stream on its own), each
// host's result, and the end. Any number of readers can follow it from the
// start, each at its own pace (Wait). It is safe for concurrent use.
type EventLog struct {
	mu       sync.Mutex
	events   []Event
	changed  chan struct{} // closed and replaced on every change
	closed   bool
	hosts    []string
	partial  map[lineKey][]byte
	streamed []bool // by host index: the agent sent output chunks
	outBytes int
	overflow bool
}

type lineKey struct {
	i      int
	stream string
}

// NewEventLog returns an empty log for a run on hosts.
func NewEventLog(hosts []string) *EventLog {
	return &EventLog{changed: make(chan struct{}), hosts: hosts, partial: make(map[lineKey][]byte),
		streamed: make([]bool, len(hosts))}
}

// Output logs the complete lines of a chunk of host i's output and keeps
// the rest for the next chunk.
func (l *EventLog) Output(i int, host string, ev wire.StreamEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || i < 0 || i >= len(l.streamed) {
		return
	}
	l.streamed[i] = true
	k := lineKey{i, ev.Stream}
	buf := append(l.partial[k], ev.Bytes()...)
	for {
		n := bytes.IndexByte(buf, '\n') + 1
		if n == 0 {
			if len(buf) < maxLine {
				break
			}
			n = maxLine
		}
		l.lineLocked(i, host, ev.Stream, buf[:n])
		buf = buf[n:]
	}
	if len(buf) == 0 {
		delete(l.partial, k)
	} else {
		l.partial[k] = append([]byte(nil), buf...)
	}
	l.notifyLocked()
}

// Result logs host i's result: first what is left of its lines (or, for an
// agent that sent no chunks, its whole output line by line), then the
// result.
func (l *EventLog) Result(i int, r store.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || i < 0 || i >= len(l.streamed) {
		return
	}
	if l.streamed[i] {
		for _, stream := range []string{"stdout", "stderr"} {
			k := lineKey{i, stream}
			if buf := l.partial[k]; len(buf) > 0 {
				l.lineLocked(i, r.Host, stream, buf)
			}
			delete(l.partial, k)
		}
	} else {
		stdout, stderr := r.Output()
		l.linesLocked(i, r.Host, "stdout", stdout)
		l.linesLocked(i, r.Host, "stderr", stderr)
	}
	l.events = append(l.events, Event{Kind: EventResult, Index: i, Host: r.Host, Result: r})
	l.notifyLocked()
}

// Batch logs the start of a batch of a rollout.
func (l *EventLog) Batch(b BatchEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.events = append(l.events, Event{Kind: EventBatch, Batch: b})
	l.notifyLocked()
}

// Close logs the end of the run with its final record. Nothing is logged
// after it.
func (l *EventLog) Close(run store.Run) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.events = append(l.events, Event{Kind: EventDone, Run: run})
	l.closed = true
	l.notifyLocked()
}

func (l *EventLog) linesLocked(i int, host, stream string, data []byte) {
	for len(data) > 0 {
		n := bytes.IndexByte(data, '\n') + 1
		if n == 0 || n > maxLine {
			n = min(len(data), maxLine)
		}
		l.lineLocked(i, host, stream, data[:n])
		data = data[n:]
	}
}

func (l *EventLog) lineLocked(i int, host, stream string, line []byte) {
	if l.overflow {
		return
	}
	if l.outBytes+len(line) > MaxLiveOutput {
		l.overflow = true
		l.events = append(l.events, Event{Kind: EventOverflow})
		return
	}
	l.outBytes += len(line)
	l.events = append(l.events, Event{Kind: EventOutput, Index: i, Host: host, Output: wire.NewStreamEvent(stream, line)})
}

func (l *EventLog) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Wait returns the events after the first n (those a reader has seen),
// waiting until there is at least one or ctx ends. end is true when the
// events returned finish the log.
func (l *EventLog) Wait(ctx context.Context, n int) (events []Event, end bool, err error) {
	for {
		l.mu.Lock()
		if n < len(l.events) {
			events = append([]Event(nil), l.events[n:]...)
			end = l.closed
			l.mu.Unlock()
			return events, end, nil
		}
		if l.closed {
			l.mu.Unlock()
			return nil, true, nil
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// StoredEvents returns the events of a stored run as a log would hold
// them: each done host's output line by line and its result, in the order
// of the hosts, and — unless the run is still running — the end. For a
// rollout, each batch the record says was started is announced before its
// hosts' results, with the failures stored for the batches before it.
func StoredEvents(run store.Run) []Event {
	l := NewEventLog(run.Hosts)
	index := make(map[string]int, len(run.Hosts))
	for i, h := range run.Hosts {
		index[h] = i
	}
	b := run.Batches
	next, failures := 1, 0 // the batch to announce next; failed hosts before it
	announce := func(upTo int) {
		if b == nil || b.Size < 1 {
			return
		}
		for ; next <= min(upTo, b.Current); next++ {
			lo, hi := min(len(run.Hosts), (next-1)*b.Size), min(len(run.Hosts), next*b.Size)
			l.Batch(BatchEvent{Batch: next, Batches: b.Count, Hosts: run.Hosts[lo:hi], Failures: failures})
		}
	}
	for _, r := range run.Results {
		i, ok := index[r.Host]
		if !ok {
			continue
		}
		if b != nil && b.Size > 0 {
			announce(i/b.Size + 1)
		}
		l.Result(i, r)
		if r.Exit != 0 && r.WasAttempted() {
			failures++
		}
	}
	if b != nil {
		announce(b.Current) // started, no host done yet
	}
	if run.Status != store.RunRunning {
		l.Close(run)
	}
	return l.events
}
