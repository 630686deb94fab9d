package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// WriteJSON writes v as indented JSON and a newline: the --json form of
// every command. <, > and & are written as they are, not as \u escapes.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table is an aligned text table: a header line, a dashed separator line,
// and one line per row. Columns are separated by two spaces; trailing
// spaces are trimmed.
type Table struct {
	header []string
	rows   [][]string
}

// NewTable starts a table with the column names.
func NewTable(header ...string) *Table { return &Table{header: header} }

// Row adds a row; missing cells are empty, extra cells are dropped.
// Control characters in cells are shown as spaces so a row stays one line.
func (t *Table) Row(cells ...string) {
	row := make([]string, len(t.header))
	for i := range row {
		if i < len(cells) {
			row[i] = oneLine(cells[i])
		}
	}
	t.rows = append(t.rows, row)
}

// Write writes the table to w.
func (t *Table) Write(w io.Writer) error {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	bw := bufio.NewWriter(w)
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
		}
		bw.WriteString(strings.TrimRight(b.String(), " "))
		bw.WriteByte('\n')
	}
	line(t.header)
	dashes := make([]string, len(widths))
	for i, n := range widths {
		dashes[i] = strings.Repeat("-", n)
	}
	line(dashes)
	for _, r := range t.rows {
		line(r)
	}
	return bw.Flush()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// RunHeader is the first line of a host's block: "==> HOST  [OK  exit:0
// 12ms]", FAIL for any exit but 0.
func RunHeader(r store.Result) string {
	if !r.WasAttempted() {
		return fmt.Sprintf("==> %s  [SKIP  not attempted]", r.Host)
	}
	word := "OK"
	if r.Exit != 0 {
		word = "FAIL"
	}
	return fmt.Sprintf("==> %s  [%s  exit:%d  %s]", r.Host, word, r.Exit, r.RTT)
}

// WriteRunResult writes one host's block of the human run format: the
// header, an "ERROR: …" line when the host failed with a reason (or a
// signal), a "NOTE: output truncated…" line when the agent cut the output,
// stdout exactly as written (a missing final newline is added), then each
// stderr line prefixed "STDERR: ".
func WriteRunResult(w io.Writer, r store.Result) error {
	var b bytes.Buffer
	b.WriteString(RunHeader(r))
	b.WriteByte('\n')
	writeProblems(&b, r)
	stdout, stderr := r.Output()
	b.Write(stdout)
	if len(stdout) > 0 && stdout[len(stdout)-1] != '\n' {
		b.WriteByte('\n')
	}
	writePrefixed(&b, "STDERR: ", stderr)
	_, err := w.Write(b.Bytes())
	return err
}

// WriteRunSummary writes the header and the ERROR and NOTE lines of a
// host's result without its output: how --stream ends each host.
func WriteRunSummary(w io.Writer, r store.Result) error {
	var b bytes.Buffer
	b.WriteString(RunHeader(r))
	b.WriteByte('\n')
	writeProblems(&b, r)
	_, err := w.Write(b.Bytes())
	return err
}

// writeProblems writes the ERROR and NOTE lines of r.
func writeProblems(b *bytes.Buffer, r store.Result) {
	switch {
	case r.Error != "":
		fmt.Fprintf(b, "ERROR: %s\n", oneLine(r.Error))
	case r.Signal != "":
		fmt.Fprintf(b, "ERROR: killed by signal %s\n", oneLine(r.Signal))
	}
	if r.Truncated {
		b.WriteString("NOTE: output truncated at the agent's output_limit\n")
	}
}

// writePrefixed writes each line of data with prefix; a last line without
// a newline gets one.
func writePrefixed(b *bytes.Buffer, prefix string, data []byte) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		b.WriteString(prefix)
		b.Write(line)
		b.WriteByte('\n')
	}
}

// WriteRunStatus writes a stored run for status REQID: what was run, by
// whom and when, then each host's block as run shows it.
func WriteRunStatus(w io.Writer, r store.Run) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "reqid     %s\n", r.ReqID)
	fmt.Fprintf(&b, "script    %s\n", oneLine(r.Script))
	if len(r.Args) > 0 {
		quoted := make([]string, len(r.Args))
		for i, a := range r.Args {
			quoted[i] = fmt.Sprintf("%q", a)
		}
		fmt.Fprintf(&b, "args      %s\n", strings.Join(quoted, " "))
	}
	fmt.Fprintf(&b, "hosts     %s\n", strings.Join(r.Hosts, " "))
	fmt.Fprintf(&b, "user      %s\n", oneLine(r.Username))
	fmt.Fprintf(&b, "started   %s\n", r.Started.UTC().Format("2006-01-02T15:04:05Z"))
	if !r.Finished.IsZero() {
		fmt.Fprintf(&b, "finished  %s\n", r.Finished.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if r.RetryOf != "" {
		fmt.Fprintf(&b, "retry of  %s\n", r.RetryOf)
	}
	status := r.Status
	if r.Status == store.RunDone {
		failed, skipped := tally(r.Results)
		status = fmt.Sprintf("done, %d of %d hosts failed", failed+skipped, len(r.Results))
		if skipped > 0 {
			status += fmt.Sprintf(" (%d of them not attempted)", skipped)
		}
	}
	fmt.Fprintf(&b, "status    %s\n", status)
	if bt := r.Batches; bt != nil {
		fmt.Fprintf(&b, "batches   %d of %d started, %d hosts each, %d hosts failed", bt.Current, bt.Count, bt.Size, bt.Failures)
		if bt.MaxFailures != nil {
			fmt.Fprintf(&b, " (max failures %d)", *bt.MaxFailures)
		}
		if bt.FailFast {
			b.WriteString(" (fail-fast)")
		}
		b.WriteByte('\n')
		if bt.Stopped != "" {
			fmt.Fprintf(&b, "stopped   %s\n", oneLine(bt.Stopped))
		}
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	for _, res := range r.Results {
		if err := WriteRunResult(w, res); err != nil {
			return err
		}
	}
	return nil
}

// RunTally counts results for a summary: "20 hosts, 2 failed", plus ", 10
// not attempted" when a rollout stopped early. Hosts not attempted are
// not counted as failed here, though they make the run not ok.
func RunTally(results []store.Result) string {
	failed, skipped := tally(results)
	s := fmt.Sprintf("%d hosts, %d failed", len(results), failed)
	if skipped > 0 {
		s += fmt.Sprintf(", %d not attempted", skipped)
	}
	return s
}

// tally counts the hosts that were attempted and failed, and those not
// attempted.
func tally(results []store.Result) (failed, skipped int) {
	for _, r := range results {
		switch {
		case !r.WasAttempted():
			skipped++
		case r.Exit != 0:
			failed++
		}
	}
	return failed, skipped
}

// StatusJSON is the --json form of status REQID: the stored run, with ok
// true only when it is done and every host exited 0.
type StatusJSON struct {
	OK bool `json:"ok"`
	store.Run
}

// WritePingTable writes ping results as a table: HOST STATUS RTT VERSION
// EXPIRY LEFT ERROR. LEFT is the days the certificate the agent presented
// has left ("364d"), with WARN under control.ExpiryWarnDays, or "renewed"
// when this ping renewed it (EXPIRY is then the new certificate's).
func WritePingTable(w io.Writer, results []control.PingResult) error {
	t := NewTable("HOST", "STATUS", "RTT", "VERSION", "EXPIRY", "LEFT", "ERROR")
	for _, r := range results {
		expiry, left := r.Expiry, ""
		switch {
		case r.Renewed != nil:
			expiry, left = r.Renewed.Expiry, "renewed"
		case r.ExpiresInDays != nil:
			left = fmt.Sprintf("%dd", *r.ExpiresInDays)
			if r.ExpiryWarning {
				left += " WARN"
			}
		}
		t.Row(r.Host, r.Status, r.RTT, r.Version, expiry, left, r.Error)
	}
	return t.Write(w)
}

// WriteDiscoverTable writes discovery results as a table: HOST STATUS
// VERSION SCRIPTS TAGS ERROR, scripts comma-separated (a script whose file
// is not executable is marked with a trailing "!"), tags as sorted
// key=value pairs.
func WriteDiscoverTable(w io.Writer, results []control.DiscoverResult) error {
	t := NewTable("HOST", "STATUS", "VERSION", "SCRIPTS", "TAGS", "ERROR")
	for _, r := range results {
		scripts := make([]string, len(r.Scripts))
		for i, s := range r.Scripts {
			scripts[i] = s.Name
			if !s.Executable {
				scripts[i] += "!"
			}
		}
		t.Row(r.Host, r.Status, r.Version, strings.Join(scripts, ","), FormatTags(r.Tags), r.Error)
	}
	return t.Write(w)
}

// FormatTags writes tags as k=v pairs sorted by name and joined by
// commas ("env=prod,role=web"); "" when there are none.
func FormatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + tags[k]
	}
	return strings.Join(keys, ",")
}

// WriteLocksTable writes held locks: HOST SCRIPT PID USER REQID SINCE.
// Locks held by a Perl dispatcher have no holder details.
func WriteLocksTable(w io.Writer, locks []store.LockInfo) error {
	t := NewTable("HOST", "SCRIPT", "PID", "USER", "REQID", "SINCE")
	for _, l := range locks {
		pid, since := "", ""
		if l.PID != 0 {
			pid = fmt.Sprint(l.PID)
		}
		if !l.Started.IsZero() {
			since = l.Started.UTC().Format("2006-01-02T15:04:05Z")
		}
		t.Row(l.Host, l.Script, pid, l.User, l.ReqID, since)
	}
	return t.Write(w)
}

// LockJSON is one held lock in list-locks --json.
type LockJSON struct {
	Host    string `json:"host"`
	Script  string `json:"script"`
	PID     int    `json:"pid,omitempty"`
	User    string `json:"user,omitempty"`
	ReqID   string `json:"reqid,omitempty"`
	Started string `json:"started,omitempty"`
}

// LocksJSON is list-locks --json: {"ok":true,"locks":[…]}.
type LocksJSON struct {
	OK    bool       `json:"ok"`
	Locks []LockJSON `json:"locks"`
}

// NewLocksJSON converts held locks to their JSON form.
func NewLocksJSON(locks []store.LockInfo) LocksJSON {
	out := LocksJSON{OK: true, Locks: make([]LockJSON, len(locks))}
	for i, l := range locks {
		out.Locks[i] = LockJSON{Host: l.Host, Script: l.Script, PID: l.PID, User: l.User, ReqID: l.ReqID}
		if !l.Started.IsZero() {
			out.Locks[i].Started = l.Started.UTC().Format("2006-01-02T15:04:05Z")
		}
	}
	return out
}

// IsTerminal reports whether w is a character device (a terminal), the
// condition for the progress line. A pipe, a file or a buffer is not.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
