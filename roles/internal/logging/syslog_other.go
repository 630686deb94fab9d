//go:build windows || plan9

package logging

import (
	"errors"
	"io"
	"runtime"

	"go.uber.org/zap/zapcore"
)

func newSyslogCore(network, addr, tag string, enc zapcore.Encoder, lvl zapcore.LevelEnabler) (zapcore.Core, io.Closer, error) {
	return nil, nil, errors.New("syslog is not available on " + runtime.GOOS)
}
