package logging

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// TimeLayout is the layout of TS and of every time value in both formats:
// RFC 3339 with milliseconds, always in UTC.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Keys the kv encoder writes itself. A field whose (upper-cased, top-level)
// key equals one of them is written as FIELD_<KEY> instead, so a field can
// never overwrite or impersonate the entry's own ACTION or LEVEL.
const (
	keyAction = "ACTION"
	keyLevel  = "LEVEL"
	keyTime   = "TS"
	keyLogger = "LOGGER"
	keyCaller = "CALLER"
	keyStack  = "STACK"

	reservedPrefix = "FIELD_"
)

// EncoderConfig selects the optional parts of a line. The zero value writes
// ACTION, LEVEL, LOGGER (when the logger is named) and the fields.
type EncoderConfig struct {
	Time   bool // TS (kv) or ts (json), formatted with TimeLayout in UTC
	Caller bool // CALLER / caller as file:line, when the entry carries one
	Stack  bool // STACK / stack, when the entry carries a stack trace
}

var (
	bufferPool  = buffer.NewPool()
	scratchPool = sync.Pool{New: func() any { return &kvEncoder{} }}
)

// span locates one key and its rendered value inside kvEncoder.buf.
type span struct{ k0, k1, v0, v1 int }

// kvEncoder is the "kv" zapcore.Encoder. Keys and already-rendered values are
// appended to buf; pairs records where each one is. Nothing is sorted until
// EncodeEntry, which works on a copy so the accumulated context is never
// modified and concurrent EncodeEntry calls are safe.
type kvEncoder struct {
	cfg    EncoderConfig
	buf    []byte
	pairs  []span
	cur    span
	prefix string // open namespace / object path, upper-cased, ends in '.'
	line   []byte // EncodeEntry's output, kept to reuse its memory
}

// NewKVEncoder returns the "kv" encoder: one line per entry,
//
//	ACTION=<message> KEY=value KEY=value …
//
// with ACTION first and every other key (LEVEL, TS, LOGGER, CALLER, STACK
// and the fields, With fields included) upper-cased and sorted bytewise.
// Values are written plain when every character is safe and quoted with
// strconv.Quote otherwise, so an entry is always exactly one line. When a key
// occurs twice the last value added wins (an entry field overrides a With
// field of the same name). Fields whose key is Sensitive are written as
// [redacted].
func NewKVEncoder(cfg EncoderConfig) zapcore.Encoder {
	return &kvEncoder{cfg: cfg}
}

// Clone implements zapcore.Encoder.
func (e *kvEncoder) Clone() zapcore.Encoder {
	return &kvEncoder{
		cfg:    e.cfg,
		buf:    slices.Clone(e.buf),
		pairs:  slices.Clone(e.pairs),
		prefix: e.prefix,
	}
}

// EncodeEntry implements zapcore.Encoder.
func (e *kvEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	s := scratchPool.Get().(*kvEncoder)
	defer func() {
		if cap(s.buf) <= 64<<10 && cap(s.line) <= 64<<10 {
			scratchPool.Put(s)
		}
	}()
	s.cfg = e.cfg
	s.buf = append(s.buf[:0], e.buf...)
	s.pairs = append(s.pairs[:0], e.pairs...)
	s.prefix = e.prefix

	s.meta(keyLevel)
	s.buf = append(s.buf, ent.Level.String()...)
	s.end()
	if e.cfg.Time && !ent.Time.IsZero() {
		s.meta(keyTime)
		s.buf = ent.Time.UTC().AppendFormat(s.buf, TimeLayout)
		s.end()
	}
	if ent.LoggerName != "" {
		s.meta(keyLogger)
		s.buf = appendValue(s.buf, ent.LoggerName)
		s.end()
	}
	if e.cfg.Caller && ent.Caller.Defined {
		s.meta(keyCaller)
		s.buf = appendValue(s.buf, ent.Caller.TrimmedPath())
		s.end()
	}
	if e.cfg.Stack && ent.Stack != "" {
		s.meta(keyStack)
		s.buf = appendValue(s.buf, ent.Stack)
		s.end()
	}
	for i := range fields {
		fields[i].AddTo(s)
	}

	s.line = append(s.line[:0], keyAction+"="...)
	s.line = appendValue(s.line, ent.Message)
	s.line = s.appendPairs(s.line, ' ', true)
	s.line = append(s.line, '\n')
	out := bufferPool.Get()
	_, _ = out.Write(s.line)
	return out, nil
}

// meta starts a pair with a key written by the encoder itself: no prefix,
// no renaming, no redaction.
func (e *kvEncoder) meta(key string) {
	e.cur.k0 = len(e.buf)
	e.buf = append(e.buf, key...)
	e.cur.k1 = len(e.buf)
	e.cur.v0 = len(e.buf)
}

// key starts a pair for a field key. It reports whether the caller should
// now append the value; for a redacted key it has appended [redacted] itself
// and the caller must only call end.
func (e *kvEncoder) key(k string) bool {
	k0 := len(e.buf)
	e.buf = append(e.buf, e.prefix...)
	e.buf = appendKey(e.buf, k)
	if e.prefix == "" && isReserved(e.buf[k0:]) {
		e.buf = append(e.buf[:k0], reservedPrefix...)
		e.buf = appendKey(e.buf, k)
	}
	e.cur = span{k0: k0, k1: len(e.buf), v0: len(e.buf)}
	if Sensitive(k) {
		e.buf = append(e.buf, Redacted...)
		return false
	}
	return true
}

// end closes the pair started by key or meta.
func (e *kvEncoder) end() {
	e.cur.v1 = len(e.buf)
	e.pairs = append(e.pairs, e.cur)
}

// appendPairs sorts the pairs by key (stable, so among equal keys the last
// added stays last), drops all but the last of each key and appends them as
// KEY=value separated by sep. With leading, a separator is written before
// the first pair too.
func (e *kvEncoder) appendPairs(dst []byte, sep byte, leading bool) []byte {
	buf := e.buf
	slices.SortStableFunc(e.pairs, func(a, b span) int {
		return bytes.Compare(buf[a.k0:a.k1], buf[b.k0:b.k1])
	})
	first := true
	for i, p := range e.pairs {
		if i+1 < len(e.pairs) {
			n := e.pairs[i+1]
			if bytes.Equal(buf[p.k0:p.k1], buf[n.k0:n.k1]) {
				continue // last wins
			}
		}
		if !first || leading {
			dst = append(dst, sep)
		}
		first = false
		dst = append(dst, buf[p.k0:p.k1]...)
		dst = append(dst, '=')
		dst = append(dst, buf[p.v0:p.v1]...)
	}
	return dst
}

func isReserved(k []byte) bool {
	switch string(k) {
	case keyAction, keyLevel, keyTime, keyLogger, keyCaller, keyStack:
		return true
	}
	return false
}

// appendKey appends k upper-cased, with every character outside
// [A-Za-z0-9_.-] replaced by '_' so a key can never contain a space, '=',
// quote or line break. An empty key becomes "_".
func appendKey(dst []byte, k string) []byte {
	if k == "" {
		return append(dst, '_')
	}
	for _, r := range k {
		switch {
		case 'a' <= r && r <= 'z':
			dst = append(dst, byte(r-'a'+'A'))
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '_', r == '.', r == '-':
			dst = append(dst, byte(r))
		default:
			dst = append(dst, '_')
		}
	}
	return dst
}

// safeASCII marks the ASCII bytes a value may contain and still be written
// unquoted: letters, digits and -_.:/@+,%~^*!?()[]{}.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.:/@+,%~^*!?()[]{}" {
		t[c] = true
	}
	return t
}()

// plain reports whether s can be written without quotes: it is not empty and
// every character is a safe ASCII byte or a valid non-ASCII letter, number or
// symbol (so "12µs" and "café" stay readable). Spaces of any kind, quotes,
// '=', backslashes, control and format characters, combining marks and
// invalid UTF-8 all force quoting.
func plain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !safeASCII[c] {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || !(unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsSymbol(r)) {
			return false
		}
		i += n
	}
	return true
}

// appendValue appends s plain when it is safe and strconv.Quote'd otherwise.
// The result never contains a raw line break or control byte, and
// strconv.Unquote of a quoted result gives back s exactly.
func appendValue(dst []byte, s string) []byte {
	if plain(s) {
		return append(dst, s...)
	}
	return strconv.AppendQuote(dst, s)
}

func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// The zapcore.ObjectEncoder methods. Objects are flattened: their keys are
// written as PARENT.CHILD.

func (e *kvEncoder) AddString(k, v string) {
	if e.key(k) {
		e.buf = appendValue(e.buf, v)
	}
	e.end()
}

func (e *kvEncoder) AddByteString(k string, v []byte) { e.AddString(k, string(v)) }

func (e *kvEncoder) AddBinary(k string, v []byte) {
	e.AddString(k, base64.StdEncoding.EncodeToString(v))
}

func (e *kvEncoder) AddBool(k string, v bool) {
	if e.key(k) {
		e.buf = strconv.AppendBool(e.buf, v)
	}
	e.end()
}

func (e *kvEncoder) AddComplex128(k string, v complex128) {
	e.AddString(k, strconv.FormatComplex(v, 'g', -1, 128))
}

func (e *kvEncoder) AddComplex64(k string, v complex64) {
	e.AddString(k, strconv.FormatComplex(complex128(v), 'g', -1, 64))
}

func (e *kvEncoder) AddDuration(k string, v time.Duration) { e.AddString(k, v.String()) }

func (e *kvEncoder) AddFloat64(k string, v float64) {
	if e.key(k) {
		e.buf = strconv.AppendFloat(e.buf, v, 'g', -1, 64)
	}
	e.end()
}

func (e *kvEncoder) AddFloat32(k string, v float32) {
	if e.key(k) {
		e.buf = strconv.AppendFloat(e.buf, float64(v), 'g', -1, 32)
	}
	e.end()
}

func (e *kvEncoder) AddInt64(k string, v int64) {
	if e.key(k) {
		e.buf = strconv.AppendInt(e.buf, v, 10)
	}
	e.end()
}

func (e *kvEncoder) AddInt(k string, v int)     { e.AddInt64(k, int64(v)) }
func (e *kvEncoder) AddInt32(k string, v int32) { e.AddInt64(k, int64(v)) }
func (e *kvEncoder) AddInt16(k string, v int16) { e.AddInt64(k, int64(v)) }
func (e *kvEncoder) AddInt8(k string, v int8)   { e.AddInt64(k, int64(v)) }

func (e *kvEncoder) AddUint64(k string, v uint64) {
	if e.key(k) {
		e.buf = strconv.AppendUint(e.buf, v, 10)
	}
	e.end()
}

func (e *kvEncoder) AddUint(k string, v uint)     { e.AddUint64(k, uint64(v)) }
func (e *kvEncoder) AddUint32(k string, v uint32) { e.AddUint64(k, uint64(v)) }
func (e *kvEncoder) AddUint16(k string, v uint16) { e.AddUint64(k, uint64(v)) }
func (e *kvEncoder) AddUint8(k string, v uint8)   { e.AddUint64(k, uint64(v)) }

func (e *kvEncoder) AddUintptr(k string, v uintptr) {
	if e.key(k) {
		e.buf = append(e.buf, "0x"...)
		e.buf = strconv.AppendUint(e.buf, uint64(v), 16)
	}
	e.end()
}

func (e *kvEncoder) AddTime(k string, v time.Time) {
	if e.key(k) {
		e.buf = v.UTC().AppendFormat(e.buf, TimeLayout)
	}
	e.end()
}

// AddReflected writes v as JSON, quoted as any other value.
func (e *kvEncoder) AddReflected(k string, v any) error {
	if !Sensitive(k) {
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		e.AddString(k, string(j))
		return nil
	}
	e.key(k)
	e.end()
	return nil
}

// AddObject flattens the object: its fields become K.CHILD pairs. A
// redacted key hides the whole object.
func (e *kvEncoder) AddObject(k string, m zapcore.ObjectMarshaler) error {
	if Sensitive(k) {
		e.key(k)
		e.end()
		return nil
	}
	saved := e.prefix
	e.prefix = string(appendKey([]byte(saved), k)) + "."
	err := m.MarshalLogObject(e)
	e.prefix = saved
	return err
}

// AddArray writes the elements joined by commas; see kvArray.
func (e *kvEncoder) AddArray(k string, m zapcore.ArrayMarshaler) error {
	if !e.key(k) {
		e.end()
		return nil
	}
	a := kvArray{}
	err := m.MarshalLogArray(&a)
	e.buf = appendValue(e.buf, string(a.buf))
	e.end()
	return err
}

// OpenNamespace prefixes every later key of this entry (or of this logger,
// when used in With) with K.
func (e *kvEncoder) OpenNamespace(k string) {
	e.prefix = string(appendKey([]byte(e.prefix), k)) + "."
}

// kvArray renders an array as one value: elements joined by ',', an element
// that is empty or contains ',' or '"' quoted with strconv.Quote, nested
// arrays in [ ] and objects as {K=v K=v}. The joined text is then quoted as
// a whole if it is not plain.
type kvArray struct {
	buf []byte
	n   int
}

func (a *kvArray) sep() {
	if a.n > 0 {
		a.buf = append(a.buf, ',')
	}
	a.n++
}

func (a *kvArray) AppendString(v string) {
	a.sep()
	if v == "" || strings.ContainsAny(v, `,"`) {
		a.buf = strconv.AppendQuote(a.buf, v)
		return
	}
	a.buf = append(a.buf, v...)
}

func (a *kvArray) AppendByteString(v []byte)      { a.AppendString(string(v)) }
func (a *kvArray) AppendDuration(v time.Duration) { a.AppendString(v.String()) }
func (a *kvArray) AppendTime(v time.Time)         { a.AppendString(formatTime(v)) }

func (a *kvArray) AppendBool(v bool) {
	a.sep()
	a.buf = strconv.AppendBool(a.buf, v)
}

func (a *kvArray) AppendComplex128(v complex128) {
	a.sep()
	a.buf = append(a.buf, strconv.FormatComplex(v, 'g', -1, 128)...)
}

func (a *kvArray) AppendComplex64(v complex64) {
	a.sep()
	a.buf = append(a.buf, strconv.FormatComplex(complex128(v), 'g', -1, 64)...)
}

func (a *kvArray) AppendFloat64(v float64) {
	a.sep()
	a.buf = strconv.AppendFloat(a.buf, v, 'g', -1, 64)
}

func (a *kvArray) AppendFloat32(v float32) {
	a.sep()
	a.buf = strconv.AppendFloat(a.buf, float64(v), 'g', -1, 32)
}

func (a *kvArray) AppendInt64(v int64) {
	a.sep()
	a.buf = strconv.AppendInt(a.buf, v, 10)
}

func (a *kvArray) AppendInt(v int)     { a.AppendInt64(int64(v)) }
func (a *kvArray) AppendInt32(v int32) { a.AppendInt64(int64(v)) }
func (a *kvArray) AppendInt16(v int16) { a.AppendInt64(int64(v)) }
func (a *kvArray) AppendInt8(v int8)   { a.AppendInt64(int64(v)) }

func (a *kvArray) AppendUint64(v uint64) {
	a.sep()
	a.buf = strconv.AppendUint(a.buf, v, 10)
}

func (a *kvArray) AppendUint(v uint)     { a.AppendUint64(uint64(v)) }
func (a *kvArray) AppendUint32(v uint32) { a.AppendUint64(uint64(v)) }
func (a *kvArray) AppendUint16(v uint16) { a.AppendUint64(uint64(v)) }
func (a *kvArray) AppendUint8(v uint8)   { a.AppendUint64(uint64(v)) }

func (a *kvArray) AppendUintptr(v uintptr) {
	a.sep()
	a.buf = append(a.buf, "0x"...)
	a.buf = strconv.AppendUint(a.buf, uint64(v), 16)
}

func (a *kvArray) AppendReflected(v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	a.AppendString(string(j))
	return nil
}

func (a *kvArray) AppendArray(m zapcore.ArrayMarshaler) error {
	a.sep()
	sub := kvArray{}
	err := m.MarshalLogArray(&sub)
	a.buf = append(a.buf, '[')
	a.buf = append(a.buf, sub.buf...)
	a.buf = append(a.buf, ']')
	return err
}

func (a *kvArray) AppendObject(m zapcore.ObjectMarshaler) error {
	a.sep()
	var sub kvEncoder
	err := m.MarshalLogObject(&sub)
	a.buf = append(a.buf, '{')
	a.buf = sub.appendPairs(a.buf, ' ', false)
	a.buf = append(a.buf, '}')
	return err
}
