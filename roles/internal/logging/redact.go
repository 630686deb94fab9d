package logging

import (
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
)

// Redacted replaces the value of every field whose key is Sensitive.
const Redacted = "[redacted]"

// Sensitive reports whether a field key names a secret: token, password,
// secret, key_pem, or anything ending in _token, compared case-insensitively.
// It looks at one key, not a dotted path: in zap.Dict("auth",
// zap.String("token", t)) the inner key "token" is what is checked.
//
// Redaction is defence in depth. Code must still never pass a token or key to
// a logger (SPEC §8); this only catches the mistake when the field is named
// for what it holds. Values of other keys, error messages and JSON produced
// for zap.Reflect values are not inspected.
func Sensitive(key string) bool {
	for _, k := range [...]string{"token", "password", "secret", "key_pem"} {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	const suffix = "_token"
	return len(key) >= len(suffix) && strings.EqualFold(key[len(key)-len(suffix):], suffix)
}

// The JSON encoder is zap's own; these wrappers put redaction in front of
// it. redactor sits between a zapcore.ObjectEncoder and the code adding
// fields, replacing Sensitive keys and wrapping nested objects and arrays so
// their keys are checked too.

type redactor struct{ enc zapcore.ObjectEncoder }

func (r redactor) AddArray(k string, m zapcore.ArrayMarshaler) error {
	if Sensitive(k) {
		r.enc.AddString(k, Redacted)
		return nil
	}
	return r.enc.AddArray(k, redactedArray{m})
}

func (r redactor) AddObject(k string, m zapcore.ObjectMarshaler) error {
	if Sensitive(k) {
		r.enc.AddString(k, Redacted)
		return nil
	}
	return r.enc.AddObject(k, redactedObject{m})
}

func (r redactor) AddReflected(k string, v any) error {
	if Sensitive(k) {
		r.enc.AddString(k, Redacted)
		return nil
	}
	return r.enc.AddReflected(k, v)
}

func (r redactor) OpenNamespace(k string) { r.enc.OpenNamespace(k) }

// add writes Redacted for a sensitive key and otherwise calls f.
func (r redactor) add(k string, f func()) {
	if Sensitive(k) {
		r.enc.AddString(k, Redacted)
		return
	}
	f()
}

func (r redactor) AddBinary(k string, v []byte) { r.add(k, func() { r.enc.AddBinary(k, v) }) }
func (r redactor) AddByteString(k string, v []byte) {
	r.add(k, func() { r.enc.AddByteString(k, v) })
}
func (r redactor) AddBool(k string, v bool) { r.add(k, func() { r.enc.AddBool(k, v) }) }
func (r redactor) AddComplex128(k string, v complex128) {
	r.add(k, func() { r.enc.AddComplex128(k, v) })
}
func (r redactor) AddComplex64(k string, v complex64) {
	r.add(k, func() { r.enc.AddComplex64(k, v) })
}
func (r redactor) AddDuration(k string, v time.Duration) {
	r.add(k, func() { r.enc.AddDuration(k, v) })
}
func (r redactor) AddFloat64(k string, v float64) { r.add(k, func() { r.enc.AddFloat64(k, v) }) }
func (r redactor) AddFloat32(k string, v float32) { r.add(k, func() { r.enc.AddFloat32(k, v) }) }
func (r redactor) AddInt(k string, v int)         { r.add(k, func() { r.enc.AddInt(k, v) }) }
func (r redactor) AddInt64(k string, v int64)     { r.add(k, func() { r.enc.AddInt64(k, v) }) }
func (r redactor) AddInt32(k string, v int32)     { r.add(k, func() { r.enc.AddInt32(k, v) }) }
func (r redactor) AddInt16(k string, v int16)     { r.add(k, func() { r.enc.AddInt16(k, v) }) }
func (r redactor) AddInt8(k string, v int8)       { r.add(k, func() { r.enc.AddInt8(k, v) }) }
func (r redactor) AddString(k, v string)          { r.add(k, func() { r.enc.AddString(k, v) }) }
func (r redactor) AddTime(k string, v time.Time)  { r.add(k, func() { r.enc.AddTime(k, v) }) }
func (r redactor) AddUint(k string, v uint)       { r.add(k, func() { r.enc.AddUint(k, v) }) }
func (r redactor) AddUint64(k string, v uint64)   { r.add(k, func() { r.enc.AddUint64(k, v) }) }
func (r redactor) AddUint32(k string, v uint32)   { r.add(k, func() { r.enc.AddUint32(k, v) }) }
func (r redactor) AddUint16(k string, v uint16)   { r.add(k, func() { r.enc.AddUint16(k, v) }) }
func (r redactor) AddUint8(k string, v uint8)     { r.add(k, func() { r.enc.AddUint8(k, v) }) }
func (r redactor) AddUintptr(k string, v uintptr) { r.add(k, func() { r.enc.AddUintptr(k, v) }) }

// redactedObject marshals an object through a redactor.
type redactedObject struct{ m zapcore.ObjectMarshaler }

func (o redactedObject) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	return o.m.MarshalLogObject(redactor{enc})
}

// redactedArray marshals an array whose objects and nested arrays go
// through a redactor.
type redactedArray struct{ m zapcore.ArrayMarshaler }

func (a redactedArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	return a.m.MarshalLogArray(arrayRedactor{enc})
}

type arrayRedactor struct{ zapcore.ArrayEncoder }

func (a arrayRedactor) AppendObject(m zapcore.ObjectMarshaler) error {
	return a.ArrayEncoder.AppendObject(redactedObject{m})
}

func (a arrayRedactor) AppendArray(m zapcore.ArrayMarshaler) error {
	return a.ArrayEncoder.AppendArray(redactedArray{m})
}

// redactFields returns fields with Sensitive keys replaced by Redacted and
// objects and arrays wrapped so their keys are checked as they are encoded.
// fields itself is never modified (it belongs to the caller).
func redactFields(fields []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field
	for i, f := range fields {
		g, changed := redactField(f)
		if changed && out == nil {
			out = make([]zapcore.Field, len(fields))
			copy(out, fields)
		}
		if out != nil {
			out[i] = g
		}
	}
	if out == nil {
		return fields
	}
	return out
}

func redactField(f zapcore.Field) (zapcore.Field, bool) {
	switch f.Type {
	case zapcore.NamespaceType, zapcore.SkipType:
		return f, false
	case zapcore.InlineMarshalerType:
		f.Interface = redactedObject{f.Interface.(zapcore.ObjectMarshaler)}
		return f, true
	}
	if Sensitive(f.Key) {
		return zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: Redacted}, true
	}
	switch f.Type {
	case zapcore.ObjectMarshalerType:
		f.Interface = redactedObject{f.Interface.(zapcore.ObjectMarshaler)}
		return f, true
	case zapcore.ArrayMarshalerType:
		f.Interface = redactedArray{f.Interface.(zapcore.ArrayMarshaler)}
		return f, true
	}
	return f, false
}
