package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	osexec "os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Defaults of [Runner] and [Request], and the environment every script
// starts from.
const (
	DefaultOutputLimit  = 16 << 20        // bytes kept per stream when Request.OutputLimit is 0
	DefaultGrace        = 5 * time.Second // SIGTERM → SIGKILL when Runner.Grace is 0
	DefaultDrainTimeout = 2 * time.Second // when Runner.DrainTimeout is 0

	// ExitFailed is Result.Exit when the script could not be started, was
	// refused at exec time, was killed by a signal, timed out or was
	// cancelled (SPEC §5).
	ExitFailed = 126

	DefaultPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	DefaultLANG = "C.UTF-8"

	// WorkDir is the working directory of every script.
	WorkDir = "/"
)

// Request is one run of an allowlisted script.
type Request struct {
	Entry Entry    // from Allowlist.Lookup: Path is executed, User, Group and Env are applied
	Args  []string // argv after the script path, passed byte for byte (see CheckArgs)

	// ScriptDirs, when it names any directory, makes Run resolve every
	// symbolic link in Entry.Path again just before exec and refuse a path
	// that is no longer inside one of them (pass Allowlist.ScriptDirs). The
	// resolved path is the one executed.
	ScriptDirs []string

	Stdin []byte            // written to the script's stdin, which is then closed (the JSON context)
	Env   map[string]string // extra variables (DISPATCHER_REQID …): over the clean environment, under Entry.Env

	Timeout     time.Duration // wall-clock limit; 0 = none (the caller picks the smallest that applies)
	OutputLimit int64         // bytes kept per stream; 0 = DefaultOutputLimit, negative = keep nothing

	// OnOutput, if set, receives output as it is read, stream being
	// "stdout" or "stderr", only bytes that are kept (never beyond
	// OutputLimit), at most ChunkSize bytes a call. Calls never overlap.
	// data must not be modified; it stays valid after the call (with
	// Chunked, until Result.Release). A slow callback slows the script down
	// (its pipe fills), and Run does not return while a call is in
	// progress.
	OnOutput func(stream string, data []byte)

	// Chunked leaves the kept output in the chunks it was read into:
	// Result.StdoutChunks and StderrChunks hold it, and Result.Stdout and
	// Stderr stay nil. Without it, each stream is copied into one slice at
	// the end, which for a moment takes twice its size. A caller that sets
	// Chunked calls Result.Release when done with the output, so that the
	// next run reuses the chunks.
	Chunked bool
}

// Result is what became of a run. See the package documentation for the
// meaning of Exit and Error.
type Result struct {
	Exit      int           // the script's exit code, or ExitFailed (126)
	Signal    string        // "SIGKILL", "SIGSEGV", … when the script died of a signal
	Stdout    []byte        // at most OutputLimit bytes; nil when nothing was kept, or with Request.Chunked
	Stderr    []byte        // likewise
	Truncated bool          // output beyond OutputLimit was discarded on either stream
	TimedOut  bool          // killed because Timeout expired
	Cancelled bool          // killed (or never started) because ctx was done
	Duration  time.Duration // from start to the script's exit; 0 when it never started
	Error     string        // "" when the script ran to its own end (whatever its code)

	// With Request.Chunked, the kept output; nil when the script never
	// started (Output's methods take nil as empty). Valid until Release.
	StdoutChunks, StderrChunks *Output
}

// Release hands the chunks of StdoutChunks and StderrChunks (and of what
// OnOutput was given) back for the next run; they must not be used after
// it. It does nothing without Request.Chunked, and may be called more than
// once.
func (r *Result) Release() {
	r.StdoutChunks.release()
	r.StderrChunks.release()
}

// Runner runs scripts. The zero value is ready to use; a Runner is safe for
// concurrent use and holds no state between runs.
type Runner struct {
	Grace        time.Duration // SIGTERM → SIGKILL delay; 0 = DefaultGrace
	DrainTimeout time.Duration // how long output is still read once the script has exited; 0 = DefaultDrainTimeout
	Log          *zap.Logger   // nil = no logging
}

// Run executes req.Entry.Path with req.Args and returns the result; it
// never returns nil and never panics on a bad request (that is a Result
// with Exit 126 and an Error). It returns once the script has exited and
// its output has been read to the end or for DrainTimeout, whichever comes
// first; a timeout or ctx being done kills the script's process group
// (SIGTERM, then SIGKILL after Grace).
func (r *Runner) Run(ctx context.Context, req Request) *Result {
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("script", req.Entry.Name))

	p, err := prepare(req, log)
	if err != nil {
		return &Result{Exit: ExitFailed, Error: err.Error()}
	}
	if ctx.Err() != nil {
		return &Result{Exit: ExitFailed, Cancelled: true, Error: "cancelled"}
	}
	return r.run(ctx, req, p, log)
}

// prepared is a request checked and turned into what execve needs.
type prepared struct {
	path string // executed: Entry.Path, or its resolution when ScriptDirs apply
	argv []string
	env  []string
	cred *syscall.Credential
}

// prepare checks the request and resolves path, user and environment. Its
// errors are the Error of a refused Result.
func prepare(req Request, log *zap.Logger) (prepared, error) {
	e := req.Entry
	if err := checkAbs(e.Path); err != nil {
		return prepared{}, fmt.Errorf("exec failed: %v", err)
	}
	if err := CheckArgs(req.Args); err != nil {
		return prepared{}, fmt.Errorf("exec failed: %v", err)
	}
	p := prepared{path: e.Path}
	if slices.ContainsFunc(req.ScriptDirs, func(d string) bool { return d != "" }) {
		resolved, err := CheckPath(e.Path, req.ScriptDirs)
		if errors.Is(err, errOutside) {
			log.Warn("exec refused", zap.Error(err), zap.Strings("script_dirs", req.ScriptDirs))
			return prepared{}, errOutside
		}
		if err != nil {
			return prepared{}, execFailed(err, "")
		}
		p.path = resolved
	}
	id, err := lookupIdentity(e.User, e.Group)
	if err != nil {
		return prepared{}, fmt.Errorf("exec failed: %v", err)
	}
	p.cred = id.cred
	if p.env, err = buildEnv(id, req.Env, e.Env); err != nil {
		return prepared{}, fmt.Errorf("exec failed: %v", err)
	}
	p.argv = make([]string, 0, 1+len(req.Args))
	p.argv = append(p.argv, e.Path)
	p.argv = append(p.argv, req.Args...)
	return p, nil
}

// buildEnv returns the script's environment, sorted by name: PATH, LANG,
// HOME (and USER, LOGNAME when a user is set), then extra, then entry.
func buildEnv(id identity, extra, entry map[string]string) ([]string, error) {
	if err := checkEnv(extra); err != nil {
		return nil, err
	}
	if err := checkEnv(entry); err != nil {
		return nil, err
	}
	m := map[string]string{"PATH": DefaultPATH, "LANG": DefaultLANG, "HOME": id.home}
	if id.user != "" {
		m["USER"] = id.user
		m["LOGNAME"] = id.user
	}
	maps.Copy(m, extra)
	maps.Copy(m, entry)
	env := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		env = append(env, k+"="+m[k])
	}
	return env, nil
}

func (r *Runner) run(ctx context.Context, req Request, p prepared, log *zap.Logger) *Result {
	var files []*os.File // every pipe end still open in this process
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (rd, wr *os.File, err error) {
		if rd, wr, err = os.Pipe(); err == nil {
			files = append(files, rd, wr)
		}
		return rd, wr, err
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		return &Result{Exit: ExitFailed, Error: fmt.Sprintf("exec failed: create pipes: %v", err)}
	}

	start := time.Now()
	cmd, err := startCmd(p, inR, outW, errW)
	// The child has its ends; ours would keep the pipes open forever.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		closeAll()
		return &Result{Exit: ExitFailed, Error: execFailed(err, p.path).Error()}
	}
	pgid := cmd.Process.Pid // Setpgid with Pgid 0: the group is the child's pid
	log.Debug("started", zap.Int("pid", pgid), zap.String("path", p.path))

	// stdin: a script that never reads it must not hold anything up, and one
	// that exits without reading it (EPIPE) is not an error.
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		if len(req.Stdin) > 0 {
			if _, err := inW.Write(req.Stdin); err != nil && !ignorableStdinErr(err) {
				log.Debug("writing stdin", zap.Error(err))
			}
		}
		inW.Close()
	}()

	limit := req.OutputLimit
	if limit == 0 {
		limit = DefaultOutputLimit
	}
	var emit func(string, []byte)
	if req.OnOutput != nil {
		var mu sync.Mutex
		emit = func(stream string, b []byte) {
			mu.Lock()
			defer mu.Unlock()
			req.OnOutput(stream, b)
		}
	}
	stdout := &capture{stream: "stdout", f: outR, limit: limit, emit: emit, log: log}
	stderr := &capture{stream: "stderr", f: errR, limit: limit, emit: emit, log: log}
	var readers sync.WaitGroup
	readers.Go(stdout.read)
	readers.Go(stderr.read)
	readersDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readersDone)
	}()

	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()

	res := &Result{}
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var waitErr error
	select {
	case waitErr = <-waitc:
	case <-timeout:
		res.TimedOut = true
		waitErr = r.terminate(pgid, waitc, log)
	case <-ctx.Done():
		res.Cancelled = true
		waitErr = r.terminate(pgid, waitc, log)
	}
	res.Duration = time.Since(start)
	if res.TimedOut || res.Cancelled {
		// Whatever of the group outlived its leader goes too.
		signalGroup(pgid, syscall.SIGKILL, log)
	}
	// Unblock a write held up by a background process that kept stdin open.
	inW.SetWriteDeadline(time.Now())

	r.drain(ctx, res.Cancelled, readersDone, []*os.File{outR, errR}, log)
	<-stdinDone
	closeAll()

	switch {
	case req.Chunked:
		res.StdoutChunks, res.StderrChunks = &stdout.out, &stderr.out
	default:
		res.Stdout, res.Stderr = stdout.out.Bytes(), stderr.out.Bytes()
		if req.OnOutput == nil {
			// Nothing else holds the chunks; with OnOutput the
			// caller may, and they are left to the garbage collector.
			stdout.out.release()
			stderr.out.release()
		}
	}
	res.Truncated = stdout.truncated || stderr.truncated
	r.verdict(res, cmd, waitErr, req.Timeout)
	return res
}

// startCmd starts the script. A text file busy error (the script was just
// written, and some other fork still held the writing descriptor) is
// retried briefly.
func startCmd(p prepared, stdin, stdout, stderr *os.File) (*osexec.Cmd, error) {
	var err error
	for attempt := 1; ; attempt++ {
		cmd := &osexec.Cmd{
			Path:   p.path,
			Args:   p.argv,
			Env:    p.env,
			Dir:    WorkDir,
			Stdin:  stdin,
			Stdout: stdout,
			Stderr: stderr,
			SysProcAttr: &syscall.SysProcAttr{
				Setpgid:    true,
				Credential: p.cred,
			},
		}
		if err = cmd.Start(); err == nil {
			return cmd, nil
		}
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 3 {
			return nil, err
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
	}
}

// terminate sends SIGTERM to the group, then SIGKILL after the grace
// period, and returns the leader's wait result.
func (r *Runner) terminate(pgid int, waitc <-chan error, log *zap.Logger) error {
	signalGroup(pgid, syscall.SIGTERM, log)
	grace := r.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-waitc:
		return err
	case <-t.C:
	}
	signalGroup(pgid, syscall.SIGKILL, log)
	return <-waitc
}

// drain waits for both output readers to reach end of file, for at most
// DrainTimeout (less if ctx is done and the run was not already
// cancelled), then stops them.
func (r *Runner) drain(ctx context.Context, cancelled bool, done <-chan struct{}, pipes []*os.File, log *zap.Logger) {
	d := r.DrainTimeout
	if d <= 0 {
		d = DefaultDrainTimeout
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var ctxDone <-chan struct{}
	if !cancelled {
		ctxDone = ctx.Done()
	}
	select {
	case <-done:
		return
	case <-t.C:
		log.Info("stopped reading output held open by a background process", zap.Duration("drain_timeout", d))
	case <-ctxDone:
	}
	// os.Pipe descriptors are non-blocking and polled, so a deadline in the
	// past ends a pending Read at once.
	for _, f := range pipes {
		if err := f.SetReadDeadline(time.Now()); err != nil {
			log.Error("stopping output readers", zap.Error(err))
		}
	}
	<-done
}

// verdict fills Exit, Signal and Error from how the process ended.
func (r *Runner) verdict(res *Result, cmd *osexec.Cmd, waitErr error, timeout time.Duration) {
	ws, ok := syscall.WaitStatus(0), false
	if cmd.ProcessState != nil {
		ws, ok = cmd.ProcessState.Sys().(syscall.WaitStatus)
	}
	switch {
	case !ok:
		res.Exit = ExitFailed
		res.Error = fmt.Sprintf("exec failed: wait: %v", waitErr)
		return
	case ws.Signaled():
		res.Exit = ExitFailed
		res.Signal = SignalName(ws.Signal())
	default:
		res.Exit = ws.ExitStatus()
	}
	switch {
	case res.TimedOut:
		res.Exit = ExitFailed
		res.Error = "timed out after " + formatDuration(timeout)
	case res.Cancelled:
		res.Exit = ExitFailed
		res.Error = "cancelled"
	case res.Signal != "":
		res.Error = "killed by " + res.Signal
	}
}

// capture reads one output stream, keeping up to limit bytes and
// discarding the rest so that the script never blocks on a full pipe.
// Output is read straight into the free end of the kept chunks; once the
// limit is reached, into one scratch chunk that is overwritten every time.
type capture struct {
	stream    string
	f         *os.File
	limit     int64
	emit      func(stream string, data []byte)
	log       *zap.Logger
	out       Output
	truncated bool
}

func (c *capture) read() {
	var scratch *[ChunkSize]byte
	defer func() {
		if scratch != nil {
			chunkPool.Put(scratch)
		}
	}()
	for {
		room := c.limit - int64(c.out.n)
		var buf []byte
		switch {
		case room > 0:
			buf = c.out.free(int(min(room, ChunkSize)))
		case scratch == nil:
			scratch = chunkPool.Get().(*[ChunkSize]byte)
			fallthrough
		default:
			buf = scratch[:]
		}
		n, err := c.f.Read(buf)
		switch {
		case n > 0 && room > 0:
			kept := c.out.grow(n)
			if c.emit != nil {
				c.emit(c.stream, kept)
			}
		case n > 0:
			c.truncated = true
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				c.log.Debug("reading output", zap.String("stream", c.stream), zap.Error(err))
			}
			return
		}
	}
}

// signalGroup sends sig to every process of the group; a group already
// gone is not an error.
func signalGroup(pgid int, sig syscall.Signal, log *zap.Logger) {
	if pgid <= 1 {
		return // never -1 or -0: those mean "everything" and "my own group"
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.Warn("signalling process group", zap.Int("pgid", pgid), zap.String("signal", SignalName(sig)), zap.Error(err))
	}
}

func ignorableStdinErr(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed)
}

// execFailed turns a start or resolve error into "exec failed: REASON",
// REASON being the system's words for the errno where there is one. path,
// if set, is checked after ENOENT: when the file is there, what is missing
// is its interpreter.
func execFailed(err error, path string) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("exec failed: %v", err)
	}
	if errno == syscall.ENOENT && path != "" {
		if _, serr := os.Stat(path); serr == nil {
			return fmt.Errorf("exec failed: %v (the file exists: is its #! interpreter missing?)", errno)
		}
	}
	return fmt.Errorf("exec failed: %v", errno)
}

// formatDuration prints d as Go does, without trailing zero units
// ("1m" rather than "1m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if len(s) > 3 && s[len(s)-3:] == "m0s" {
		s = s[:len(s)-2]
	}
	if len(s) > 3 && s[len(s)-3:] == "h0m" {
		s = s[:len(s)-2]
	}
	return s
}
