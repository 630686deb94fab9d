package logging

import (
	"time"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// NewJSONEncoder returns the "json" encoder: zap's JSON encoder writing one
// object per line with the keys level, ts (when cfg.Time), logger (when the
// logger is named), caller and stack (when configured), action (the entry's
// message) and then the fields with their keys as given. Times are
// TimeLayout in UTC, durations as Duration.String ("12ms"). Fields whose key
// is Sensitive are written as "[redacted]", nested objects included. Unlike
// the kv encoder, duplicate keys are all kept, as zap does.
func NewJSONEncoder(cfg EncoderConfig) zapcore.Encoder {
	zc := zapcore.EncoderConfig{
		MessageKey:     "action",
		LevelKey:       "level",
		TimeKey:        zapcore.OmitKey,
		NameKey:        "logger",
		CallerKey:      zapcore.OmitKey,
		FunctionKey:    zapcore.OmitKey,
		StacktraceKey:  zapcore.OmitKey,
		LineEnding:     "\n",
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     encodeTime,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	}
	if cfg.Time {
		zc.TimeKey = "ts"
	}
	if cfg.Caller {
		zc.CallerKey = "caller"
	}
	if cfg.Stack {
		zc.StacktraceKey = "stack"
	}
	enc := zapcore.NewJSONEncoder(zc)
	return &jsonEncoder{redactor: redactor{enc}, enc: enc}
}

func encodeTime(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(formatTime(t))
}

// jsonEncoder is zap's JSON encoder behind a redactor: With fields pass
// through the redactor's Add methods, entry fields through redactFields.
type jsonEncoder struct {
	redactor
	enc zapcore.Encoder
}

func (j *jsonEncoder) Clone() zapcore.Encoder {
	c := j.enc.Clone()
	return &jsonEncoder{redactor: redactor{c}, enc: c}
}

func (j *jsonEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	return j.enc.EncodeEntry(ent, redactFields(fields))
}
