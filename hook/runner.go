package hook

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/exec"
)

// DefaultTimeout is how long a hook may run when Runner.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// MaxEnvEntry is the longest NAME=value string one environment variable
// can be: Linux refuses to execve a string (with its terminating NUL)
// longer than 32 pages of 4 KiB. A context that would need a longer
// variable (arguments or a host list of more than about 128 KiB) is denied
// before the hook is started.
const MaxEnvEntry = 32*4096 - 1

// The reasons of the hook's own answers.
const (
	reasonDenied        = "denied by auth hook"
	reasonBadCreds      = "bad credentials"
	reasonInsufficient  = "insufficient privilege"
	reasonCancelled     = "cancelled"
	reasonNotConfigured = "no auth hook configured"
)

// Runner asks one auth hook executable. The zero value has no hook: it is
// the caller's business to decide what an unconfigured hook means (the CLI
// allows, the API applies api_auth_default) and not to call Check then;
// Check on a Runner without Path, or on a nil *Runner, denies with "no auth
// hook configured". A Runner is safe for concurrent use.
type Runner struct {
	Path    string        // absolute path of the executable (auth_hook)
	Timeout time.Duration // hook_timeout; 0 or less = DefaultTimeout
	Log     *zap.Logger   // auth-deny events (and debug lines); nil = no logging
}

// Check runs the hook for c and returns its decision. It never panics and
// always returns within about Timeout (plus the time the kernel takes to
// deliver SIGKILL): a hook that is missing, cannot run, fails, dies or
// hangs denies, and a hook still running when ctx is done is killed and
// denies with "cancelled". A zero c.Timestamp is replaced by the current
// time. Each decision is logged (auth-deny at warn level, allow at debug)
// with the action, script, username and source IP, never the token.
func (r *Runner) Check(ctx context.Context, c Context) Decision {
	if r == nil {
		return deny(reasonNotConfigured)
	}
	start := time.Now()
	d, exit := r.check(ctx, c)
	r.logDecision(c, d, exit, time.Since(start))
	return d
}

// check is Check without the log line. exit is the hook's exit code, or -1
// when it did not exit by itself.
func (r *Runner) check(ctx context.Context, c Context) (Decision, int) {
	if r.Path == "" {
		return deny(reasonNotConfigured), -1
	}
	if d, ok := checkPath(r.Path); !ok {
		return d, -1
	}
	if c.Timestamp.IsZero() {
		c.Timestamp = time.Now()
	}
	c = c.normalised()
	env, reason := environ(c)
	if reason != "" {
		return deny(reason), -1
	}
	stdin, err := encodeJSON(plainContext(c))
	if err != nil {
		// Only a timestamp outside years 0–9999 can get here; the message
		// says so and holds no field of c but that.
		return deny(fmt.Sprintf("cannot encode the hook context: %v", err)), -1
	}
	if ctx.Err() != nil {
		return deny(reasonCancelled), -1
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return r.run(ctx, env, stdin, timeout)
}

// checkPath denies a hook path that cannot be what we run: relative, not
// there, not a regular file, or with no execute bit at all. What the
// system says when it is started covers the rest (execute permission for
// others only, a noexec mount, a missing interpreter).
func checkPath(path string) (Decision, bool) {
	if strings.IndexByte(path, 0) >= 0 {
		return deny("auth hook path contains a NUL byte"), false
	}
	if !filepath.IsAbs(path) {
		return deny(fmt.Sprintf("auth hook path %q is not absolute", path)), false
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return deny(fmt.Sprintf("auth hook %s not found", path)), false
	case err != nil:
		return deny(fmt.Sprintf("auth hook %s cannot be checked: %v", path, errnoText(err))), false
	case !fi.Mode().IsRegular():
		return deny(fmt.Sprintf("auth hook %s is not a regular file", path)), false
	case fi.Mode().Perm()&0o111 == 0:
		return deny(fmt.Sprintf("auth hook %s is not executable", path)), false
	}
	return Decision{}, true
}

// environ returns the hook's whole environment, or the reason it cannot be
// built. Reasons name the field, never its value.
func environ(c Context) (env []string, reason string) {
	for _, f := range []struct{ what, v string }{
		{"the action", c.Action}, {"the script name", c.Script}, {"the username", c.Username},
		{"the token", c.Token}, {"the source IP", c.SourceIP},
	} {
		if strings.IndexByte(f.v, 0) >= 0 {
			return nil, f.what + " contains a NUL byte, which the auth hook's environment cannot carry"
		}
	}
	for i, h := range c.Hosts {
		if strings.IndexByte(h, 0) >= 0 {
			return nil, fmt.Sprintf("host %d contains a NUL byte, which the auth hook's environment cannot carry", i+1)
		}
	}
	for i, a := range c.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Sprintf("argument %d contains a NUL byte, which the auth hook's environment cannot carry", i+1)
		}
	}
	argsJSON, err := encodeJSON(c.Args)
	if err != nil {
		return nil, fmt.Sprintf("cannot encode the arguments for the auth hook: %v", err) // cannot happen: strings always encode
	}
	vars := []struct{ name, value, what string }{
		{"DISPATCHER_ACTION", c.Action, "action"},
		{"DISPATCHER_ARGS_JSON", strings.TrimSuffix(string(argsJSON), "\n"), "arguments"}, // before ARGS: the longer, and the one to name
		{"DISPATCHER_ARGS", strings.Join(c.Args, " "), "arguments"},
		{"DISPATCHER_HOSTS", strings.Join(c.Hosts, ","), "host list"},
		{"DISPATCHER_SCRIPT", c.Script, "script name"},
		{"DISPATCHER_SOURCE_IP", c.SourceIP, "source IP"},
		{"DISPATCHER_TIMESTAMP", c.Timestamp.Format(time.RFC3339Nano), "timestamp"},
		{"DISPATCHER_TOKEN", c.Token, "token"},
		{"DISPATCHER_USERNAME", c.Username, "username"},
		{"LANG", exec.DefaultLANG, ""},
		{"PATH", exec.DefaultPATH, ""},
	}
	env = make([]string, 0, len(vars))
	for _, v := range vars {
		kv := v.name + "=" + v.value
		if len(kv) > MaxEnvEntry {
			return nil, fmt.Sprintf("%s too large for the auth hook: %s would be %d bytes, the limit for one environment variable is %d",
				v.what, v.name, len(kv), MaxEnvEntry)
		}
		env = append(env, kv)
	}
	return env, ""
}

// run starts the hook and waits for its verdict, killing its process group
// on timeout or when ctx is done.
func (r *Runner) run(ctx context.Context, env []string, stdin []byte, timeout time.Duration) (Decision, int) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return deny(fmt.Sprintf("auth hook %s could not be started: create pipe: %v", r.Path, errnoText(err))), -1
	}
	cmd, err := start(r.Path, env, inR)
	inR.Close() // the hook has its copy; ours would keep the pipe open
	if err != nil {
		inW.Close()
		return startFailed(r.Path, err), -1
	}
	pgid := cmd.Process.Pid // Setpgid with Pgid 0: the group is the hook's pid

	// The context, then end of file. A hook need not read its stdin: when
	// it exits without doing so the write fails with EPIPE, and when
	// something it left behind holds the pipe open the deadline set below
	// ends the write. Neither is an error.
	written := make(chan struct{})
	go func() {
		defer close(written)
		if _, err := inW.Write(stdin); err != nil && !ignorableStdinErr(err) {
			r.logger().Debug("writing the auth hook's stdin", zap.Error(err))
		}
		inW.Close()
	}()

	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var killed string
	select {
	case <-waitc:
	case <-t.C:
		killed = "hook timed out after " + formatDuration(timeout)
	case <-ctx.Done():
		killed = reasonCancelled
	}
	if killed != "" {
		killGroup(pgid, r.logger())
		<-waitc
		// Anything that joined the group while it was being signalled.
		killGroup(pgid, r.logger())
	}
	inW.SetWriteDeadline(time.Now()) // os.ErrClosed when the write is over: fine
	<-written

	if killed != "" {
		return deny(killed), -1
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return deny("hook ended in an unknown way"), -1
	case ws.Signaled():
		return deny("hook killed by " + exec.SignalName(ws.Signal())), -1
	}
	return fromExit(ws.ExitStatus()), ws.ExitStatus()
}

// fromExit maps the hook's exit code to a decision (SPEC §8).
func fromExit(code int) Decision {
	switch code {
	case 0:
		return Decision{Outcome: Allow}
	case 1:
		return deny(reasonDenied)
	case 2:
		return Decision{Outcome: BadCredentials, Reason: reasonBadCreds}
	case 3:
		return Decision{Outcome: InsufficientPrivilege, Reason: reasonInsufficient}
	}
	return deny("hook exited " + strconv.Itoa(code))
}

// start execs path with no arguments, in its own process group, working
// directory /, stdin from the pipe and stdout and stderr on /dev/null. A
// "text file busy" error (the hook was just written, and another fork
// still held the writing descriptor) is retried briefly.
func start(path string, env []string, stdin *os.File) (*osexec.Cmd, error) {
	for attempt := 1; ; attempt++ {
		cmd := &osexec.Cmd{
			Path:        path,
			Args:        []string{path},
			Env:         env,
			Dir:         exec.WorkDir,
			Stdin:       stdin, // an *os.File: handed over as it is, no copying goroutine
			Stdout:      nil,   // nil: the null device
			Stderr:      nil,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		}
		err := cmd.Start()
		if err == nil {
			return cmd, nil
		}
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 3 {
			return nil, err
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
	}
}

// startFailed turns an error of start into a decision.
func startFailed(path string, err error) Decision {
	switch {
	case errors.Is(err, syscall.EACCES):
		return deny(fmt.Sprintf("auth hook %s is not executable", path))
	case errors.Is(err, syscall.ENOENT):
		if _, serr := os.Stat(path); serr != nil {
			return deny(fmt.Sprintf("auth hook %s not found", path))
		}
		return deny(fmt.Sprintf("auth hook %s could not be started: no such file or directory (is its #! interpreter missing?)", path))
	}
	return deny(fmt.Sprintf("auth hook %s could not be started: %v", path, errnoText(err)))
}

// errnoText is the system's words for the errno inside err, or err's own
// text when there is none.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// killGroup sends SIGKILL to the hook's process group; a group already
// gone is not an error.
func killGroup(pgid int, log *zap.Logger) {
	if pgid <= 1 {
		return // never -1 or -0: "every process" and "our own group"
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.Warn("killing the auth hook's process group", zap.Int("pgid", pgid), zap.Error(err))
	}
}

func ignorableStdinErr(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed)
}

// formatDuration prints d as Go does, without trailing zero units ("1m"
// rather than "1m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (r *Runner) logger() *zap.Logger {
	if r.Log == nil {
		return zap.NewNop()
	}
	return r.Log
}

// logDecision writes the one line of a decision: auth-deny at warn level,
// auth-allow at debug. The Context's action is logged as "request" because
// "action" is the event's own key. The token is never a field.
func (r *Runner) logDecision(c Context, d Decision, exit int, took time.Duration) {
	log := r.logger()
	fields := []zap.Field{
		zap.String("request", c.Action),
		zap.String("script", c.Script),
		zap.String("username", c.Username),
		zap.String("source_ip", c.SourceIP),
		zap.String("outcome", d.Outcome.String()),
	}
	if !d.Allowed() {
		fields = append(fields, zap.String("reason", d.Reason))
	}
	if exit >= 0 {
		fields = append(fields, zap.Int("hook_exit", exit))
	}
	fields = append(fields, zap.Duration("took", took))
	if d.Allowed() {
		log.Debug("auth-allow", fields...)
		return
	}
	log.Warn("auth-deny", fields...)
}
