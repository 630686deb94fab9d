package pairing

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// decider is what the prompt needs of control.Pairing.
type decider interface {
	ListRequests() ([]control.PendingRequest, error)
	Approve(reqid string, replace bool) (*control.Approval, error)
	Deny(reqid, reason string) (store.PairRequest, error)
}

// promptHelp is shown when the prompt starts and for "?" or an unknown
// command.
const promptHelp = `commands: a approve, d deny, s skip the current request;
          aN / dN approve or deny request N; rN approve N replacing its registered agent;
          l list pending requests; q quit`

// prompt is the interactive approval loop of pairing-mode on a terminal.
// Every pending request (whichever listener received it) is announced once
// with a number that stays its own for the session; commands act on the
// current request (the oldest one not skipped) or on a number.
type prompt struct {
	in    io.Reader
	out   io.Writer
	d     decider
	every time.Duration   // how often the queue is re-read
	nudge <-chan struct{} // a request was queued by this process: re-read now

	numbers  map[string]int // reqid → number announced
	byNumber map[int]string
	pending  []control.PendingRequest // as last read, oldest first
	skipped  map[string]bool
	decided  map[string]bool // decided here: not reported as gone
	current  string          // reqid of the request a/d/s act on
}

func newPrompt(in io.Reader, out io.Writer, d decider, every time.Duration, nudge <-chan struct{}) *prompt {
	return &prompt{in: in, out: out, d: d, every: every, nudge: nudge,
		numbers: map[string]int{}, byNumber: map[int]string{}, skipped: map[string]bool{}, decided: map[string]bool{}}
}

// run shows requests and reads commands until "q", the end of the input or
// ctx.
func (p *prompt) run(ctx context.Context) {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(p.in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	fmt.Fprintln(p.out, promptHelp)
	p.refresh()
	p.show()
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(p.out)
			return
		case line, ok := <-lines:
			if !ok {
				fmt.Fprintln(p.out)
				return
			}
			if p.handle(strings.TrimSpace(line)) {
				return
			}
			p.refresh()
			p.show()
		case <-tick.C:
			if p.refresh() {
				p.show()
			}
		case <-p.nudge:
			if p.refresh() {
				p.show()
			}
		}
	}
}

// refresh re-reads the queue, announces new requests, reports requests
// that stopped pending without a decision here, and picks the current
// request. It reports whether it printed anything.
func (p *prompt) refresh() bool {
	list, err := p.d.ListRequests()
	if err != nil {
		fmt.Fprintf(p.out, "\nerror: %v\n", err)
		return true
	}
	printed := false
	now := make(map[string]bool, len(list))
	for _, r := range list {
		now[r.ReqID] = true
		if _, ok := p.numbers[r.ReqID]; ok {
			continue
		}
		n := len(p.numbers) + 1
		p.numbers[r.ReqID], p.byNumber[n] = n, r.ReqID
		fmt.Fprintf(p.out, "\nnew request %s\n", describe(n, r))
		printed = true
	}
	for _, r := range p.pending {
		if !now[r.ReqID] && !p.decided[r.ReqID] {
			fmt.Fprintf(p.out, "\n[%d] %s is no longer pending (decided by another process, or expired)\n", p.numbers[r.ReqID], r.Hostname)
			printed = true
		}
	}
	p.pending = list
	if !now[p.current] || p.skipped[p.current] {
		p.current = ""
		for _, r := range list {
			if !p.skipped[r.ReqID] {
				p.current = r.ReqID
				break
			}
		}
	}
	return printed
}

// describe is one request as announced and listed, with the tags the
// agent claims (approving registers them).
func describe(n int, r control.PendingRequest) string {
	s := fmt.Sprintf("[%d] %s  from %s  reqid %s  code %s", n, r.Hostname, r.IP, r.ReqID, r.Code)
	if len(r.Tags) > 0 {
		s += "  tags " + output.FormatTags(r.Tags)
	}
	if r.AlreadyPaired {
		s += "  ALREADY PAIRED"
		if r.PairedSerial != "" {
			s += " (serial " + r.PairedSerial + ")"
		}
	}
	return s
}

// show prints the prompt line for the current request.
func (p *prompt) show() {
	r, ok := p.find(p.current)
	if !ok {
		fmt.Fprint(p.out, "waiting for pairing requests (l list, q quit)> ")
		return
	}
	fmt.Fprintf(p.out, "[%d] %s code %s: a approve, d deny, s skip (? help)> ", p.numbers[r.ReqID], r.Hostname, r.Code)
}

func (p *prompt) find(reqid string) (control.PendingRequest, bool) {
	for _, r := range p.pending {
		if r.ReqID == reqid && reqid != "" {
			return r, true
		}
	}
	return control.PendingRequest{}, false
}

// handle runs one command line and reports whether to quit.
func (p *prompt) handle(line string) (quit bool) {
	switch line {
	case "":
		return false
	case "q", "quit":
		return true
	case "?", "h", "help":
		fmt.Fprintln(p.out, promptHelp)
		return false
	case "l", "list":
		p.list()
		return false
	case "s", "skip":
		r, ok := p.find(p.current)
		if !ok {
			fmt.Fprintln(p.out, "no request to skip")
			return false
		}
		p.skipped[r.ReqID] = true
		fmt.Fprintf(p.out, "skipped [%d] %s; it stays pending (a%d approves it later)\n", p.numbers[r.ReqID], r.Hostname, p.numbers[r.ReqID])
		return false
	}
	op, num := line[:1], line[1:]
	if op != "a" && op != "d" && op != "r" {
		fmt.Fprintf(p.out, "unknown command %q\n%s\n", line, promptHelp)
		return false
	}
	reqid := p.current
	if num != "" {
		n, err := strconv.Atoi(num)
		if err != nil {
			fmt.Fprintf(p.out, "unknown command %q\n%s\n", line, promptHelp)
			return false
		}
		reqid = p.byNumber[n]
	}
	r, ok := p.find(reqid)
	if !ok {
		if num != "" {
			fmt.Fprintf(p.out, "no pending request %s (l lists them)\n", num)
		} else {
			fmt.Fprintln(p.out, "no request waiting")
		}
		return false
	}
	n := p.numbers[r.ReqID]
	if op == "d" {
		if _, err := p.d.Deny(r.ReqID, ""); err != nil {
			fmt.Fprintf(p.out, "error: %v\n", err)
			return false
		}
		p.decided[r.ReqID] = true
		fmt.Fprintf(p.out, "denied [%d] %s\n", n, r.Hostname)
		return false
	}
	ap, err := p.d.Approve(r.ReqID, op == "r")
	var already *control.AlreadyPairedError
	switch {
	case errors.As(err, &already):
		fmt.Fprintf(p.out, "%s is already paired; r%d approves it, replacing the registered agent and revoking its certificate\n", r.Hostname, n)
		return false
	case err != nil:
		fmt.Fprintf(p.out, "error: %v\n", err)
		return false
	}
	p.decided[r.ReqID] = true
	fmt.Fprintf(p.out, "approved [%d] %s: certificate serial %s, expires %s\n", n, r.Hostname, ap.Agent.Serial, ap.Agent.Expiry)
	if ap.Revoked != "" {
		fmt.Fprintf(p.out, "revoked the certificate it replaced (serial %s)\n", ap.Revoked)
	}
	return false
}

func (p *prompt) list() {
	if len(p.pending) == 0 {
		fmt.Fprintln(p.out, "no pending requests")
		return
	}
	for _, r := range p.pending {
		mark := " "
		if r.ReqID == p.current {
			mark = ">"
		}
		line := describe(p.numbers[r.ReqID], r)
		if p.skipped[r.ReqID] {
			line += "  (skipped)"
		}
		fmt.Fprintf(p.out, "%s %s\n", mark, line)
	}
}
