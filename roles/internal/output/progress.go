package output

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress is the live line "done N  failed N  pending N" of a fan-out,
// rewritten in place with '\r' on a terminal. It is only for terminals:
// the caller creates one only when stderr is a terminal and --json is off
// (NewProgress's enabled), and a nil *Progress does nothing, so callers
// need no conditions.
//
// The line first appears after Delay, so quick calls print nothing, and is
// redrawn on every result and every Tick. Anything written to the same
// terminal meanwhile must go through Above so the line is cleared first
// and drawn again after.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	total   int
	done    int
	failed  int
	shown   int    // width of the line on screen, 0 = none
	last    string // the line on screen
	start   time.Time
	now     func() time.Time
	delay   time.Duration
	stop    chan struct{}
	stopped chan struct{}
}

// Progress timing.
const (
	Delay = 500 * time.Millisecond // before the line first appears
	Tick  = 250 * time.Millisecond // redraw interval
)

// NewProgress returns a progress line on w for total hosts, or nil when
// enabled is false. Start begins the redraws.
func NewProgress(w io.Writer, total int, enabled bool) *Progress {
	if !enabled || total < 2 {
		return nil
	}
	return &Progress{w: w, total: total, now: time.Now, delay: Delay, start: time.Now()}
}

// Start begins redrawing every Tick. The delay counts from NewProgress.
func (p *Progress) Start() {
	if p == nil {
		return
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(Tick)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.draw()
				p.mu.Unlock()
			}
		}
	}()
}

// Add counts a finished host.
func (p *Progress) Add(failed bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if failed {
		p.failed++
	}
	p.draw()
}

// Above clears the line, runs write (which prints to the terminal), and
// draws the line again.
func (p *Progress) Above(write func()) {
	if p == nil {
		write()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	write()
	p.draw()
}

// Stop stops the redraws and clears the line.
func (p *Progress) Stop() {
	if p == nil {
		return
	}
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// Line returns the text of the progress line: hosts done (exit 0),
// failed and pending, and the whole seconds since the start.
func (p *Progress) Line() string {
	ok := p.done - p.failed
	return fmt.Sprintf("done %d  failed %d  pending %d  (%d hosts, %ds)", ok, p.failed, p.total-p.done, p.total,
		int(p.now().Sub(p.start).Seconds()))
}

func (p *Progress) draw() {
	if p.now().Sub(p.start) < p.delay {
		return
	}
	line := p.Line()
	if p.shown > 0 && line == p.last {
		return
	}
	p.last = line
	pad := ""
	if n := p.shown - len(line); n > 0 {
		pad = strings.Repeat(" ", n) + strings.Repeat("\b", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.shown = len(line)
}

func (p *Progress) clear() {
	if p.shown == 0 {
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.shown))
	p.shown = 0
}
