package logging

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Output and format names accepted in Options (and in the log and
// log_format config keys).
const (
	OutputSyslog = "syslog"
	OutputStderr = "stderr"
	FormatKV     = "kv"
	FormatJSON   = "json"
)

// DefaultTag is the syslog tag when Options.Tag is empty.
const DefaultTag = "dispatcher"

// LogFileMode is the mode of a log file New creates. An existing file keeps
// its mode.
const LogFileMode fs.FileMode = 0o640

// Options says where and how New logs.
type Options struct {
	// Output is "syslog", "stderr", an absolute file path, or "" for syslog
	// when /dev/log exists and stderr otherwise.
	Output string
	// Format is "kv" (the default when empty) or "json".
	Format string
	// Tag is the syslog tag: dispatcher, dispatcher-agent, dispatcher-api or
	// dispatcher-pairing. Empty means DefaultTag.
	Tag string
	// Level is the lowest level logged; the zero value is Info.
	Level zapcore.Level
	// Stderr is where "stderr" writes, and where zap reports its own
	// errors; nil means os.Stderr.
	Stderr io.Writer
	// Caller adds CALLER=file:line; Stack adds STACK (a quoted stack trace)
	// to entries at error level and above. Both are off by default.
	Caller bool
	Stack  bool

	// For tests: where syslog is dialled ("" = the system's socket) and the
	// path whose existence makes "" mean syslog ("" = /dev/log).
	syslogNetwork, syslogAddr string
	devLog                    string
}

// New builds the logger described by o. The returned close function flushes
// and closes the file or syslog connection; call it once at exit (it is safe
// to call more than once). An unreachable syslog is not an error: New logs to
// stderr instead and says so in one log-fallback line there. Errors are a
// bad Format or Output, or a log file that cannot be opened.
func New(o Options) (*zap.Logger, func() error, error) {
	stderr := o.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	// Wrapped so zap never calls Sync on a terminal or pipe (EINVAL).
	errOut := zapcore.Lock(zapcore.AddSync(writerOnly{stderr}))
	tag := o.Tag
	if tag == "" {
		tag = DefaultTag
	}
	var newEnc func(EncoderConfig) zapcore.Encoder
	switch o.Format {
	case "", FormatKV:
		newEnc = NewKVEncoder
	case FormatJSON:
		newEnc = NewJSONEncoder
	default:
		return nil, nil, fmt.Errorf("log format %q: want %q or %q", o.Format, FormatKV, FormatJSON)
	}
	cfg := EncoderConfig{Time: true, Caller: o.Caller, Stack: o.Stack}

	output := o.Output
	if output == "" {
		devLog := o.devLog
		if devLog == "" {
			devLog = "/dev/log"
		}
		output = OutputStderr
		if _, err := os.Stat(devLog); err == nil {
			output = OutputSyslog
		}
	}

	var (
		core   zapcore.Core
		closer io.Closer
	)
	switch output {
	case OutputStderr:
		core = zapcore.NewCore(newEnc(cfg), errOut, o.Level)
	case OutputSyslog:
		sysCfg := cfg
		sysCfg.Time = false // syslog stamps every message itself
		c, cl, err := newSyslogCore(o.syslogNetwork, o.syslogAddr, tag, newEnc(sysCfg), o.Level)
		if err == nil {
			core, closer = c, cl
			break
		}
		core = zapcore.NewCore(newEnc(cfg), errOut, o.Level)
		// Written straight to the core so the line appears whatever Level is.
		_ = core.Write(zapcore.Entry{Level: zapcore.WarnLevel, Time: time.Now(), Message: ActionLogFallback},
			[]zapcore.Field{zap.String("from", OutputSyslog), zap.String("to", OutputStderr), zap.Error(err)})
	default:
		if !filepath.IsAbs(output) {
			return nil, nil, fmt.Errorf("log output %q: want %q, %q or an absolute file path", output, OutputSyslog, OutputStderr)
		}
		f, err := openLogFile(output)
		if err != nil {
			return nil, nil, err
		}
		core = zapcore.NewCore(newEnc(cfg), zapcore.Lock(f), o.Level)
		closer = f
	}

	opts := []zap.Option{zap.ErrorOutput(errOut)}
	if o.Caller {
		opts = append(opts, zap.AddCaller())
	}
	if o.Stack {
		opts = append(opts, zap.AddStacktrace(zapcore.ErrorLevel))
	}
	l := zap.New(core, opts...)

	var (
		once     sync.Once
		closeErr error
	)
	closeFn := func() error {
		once.Do(func() {
			if err := l.Sync(); err != nil {
				closeErr = fmt.Errorf("flush log: %w", err)
			}
			if closer != nil {
				if err := closer.Close(); err != nil {
					closeErr = errors.Join(closeErr, fmt.Errorf("close log: %w", err))
				}
			}
		})
		return closeErr
	}
	return l, closeFn, nil
}

// openLogFile opens path for appending, creating it with LogFileMode
// (whatever the umask) if it does not exist. Missing directories are an
// error, not created.
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, LogFileMode)
	if err == nil {
		if err := f.Chmod(LogFileMode); err != nil {
			f.Close()
			return nil, fmt.Errorf("open log file: %w", err)
		}
		return f, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// writerOnly hides every method but Write, so zapcore.AddSync gives it a
// no-op Sync.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }
