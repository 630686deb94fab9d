//go:build !windows && !plan9

package logging

import (
	"fmt"
	"io"
	"log/syslog"
	"strings"

	"go.uber.org/zap/zapcore"
)

// newSyslogCore connects to syslog (network and addr as for syslog.Dial;
// both empty for the local socket) with facility daemon and the given tag.
func newSyslogCore(network, addr, tag string, enc zapcore.Encoder, lvl zapcore.LevelEnabler) (zapcore.Core, io.Closer, error) {
	w, err := syslog.Dial(network, addr, syslog.LOG_DAEMON|syslog.LOG_INFO, tag)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to syslog: %w", err)
	}
	return &syslogCore{LevelEnabler: lvl, enc: enc, w: w}, w, nil
}

// syslogCore writes each entry as one syslog message, its severity mapped
// from the zap level: debug, info, warning, err, and crit for dpanic, panic
// and fatal.
type syslogCore struct {
	zapcore.LevelEnabler
	enc zapcore.Encoder
	w   *syslog.Writer
}

func (c *syslogCore) With(fields []zapcore.Field) zapcore.Core {
	enc := c.enc.Clone()
	for i := range fields {
		fields[i].AddTo(enc)
	}
	return &syslogCore{LevelEnabler: c.LevelEnabler, enc: enc, w: c.w}
}

func (c *syslogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *syslogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(ent, fields)
	if err != nil {
		return err
	}
	msg := strings.TrimSuffix(buf.String(), "\n")
	buf.Free()
	switch {
	case ent.Level <= zapcore.DebugLevel:
		err = c.w.Debug(msg)
	case ent.Level == zapcore.InfoLevel:
		err = c.w.Info(msg)
	case ent.Level == zapcore.WarnLevel:
		err = c.w.Warning(msg)
	case ent.Level == zapcore.ErrorLevel:
		err = c.w.Err(msg)
	default:
		err = c.w.Crit(msg)
	}
	if err != nil {
		return fmt.Errorf("write to syslog: %w", err)
	}
	return nil
}

func (c *syslogCore) Sync() error { return nil }
