package logging

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// kvLogger returns a logger writing kv lines, without TS, to buf.
func kvLogger(buf *bytes.Buffer, cfg EncoderConfig) *zap.Logger {
	return zap.New(zapcore.NewCore(NewKVEncoder(cfg), zapcore.AddSync(buf), zapcore.DebugLevel))
}

// parseKV splits a kv line (without its newline) into key/value pairs,
// unquoting quoted values. It is strict: anything but KEY=value pairs
// separated by single spaces is an error.
func parseKV(line string) ([][2]string, error) {
	var out [][2]string
	for {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("no key at %q", line)
		}
		k := line[:eq]
		for _, c := range k {
			if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
				return nil, fmt.Errorf("bad key %q", k)
			}
		}
		line = line[eq+1:]
		var v string
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, fmt.Errorf("value of %s: %w", k, err)
			}
			v, _ = strconv.Unquote(q)
			line = line[len(q):]
		} else {
			end := strings.IndexByte(line, ' ')
			if end < 0 {
				end = len(line)
			}
			v, line = line[:end], line[end:]
			if !plain(v) {
				return nil, fmt.Errorf("unquoted value %q of %s is not plain", v, k)
			}
		}
		out = append(out, [2]string{k, v})
		if line == "" {
			return out, nil
		}
		if line[0] != ' ' {
			return nil, fmt.Errorf("no space after %s at %q", k, line)
		}
		line = line[1:]
	}
}

type hostObj struct {
	host  string
	port  int
	token string
}

func (h hostObj) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("host", h.host)
	enc.AddInt("port", h.port)
	if h.token != "" {
		enc.AddString("token", h.token)
	}
	return nil
}

func TestKVLines(t *testing.T) {
	at := time.Date(2024, 5, 1, 14, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name   string
		with   []zap.Field
		named  []string
		msg    string
		fields []zap.Field
		want   string
	}{
		{
			name:   "action first, rest sorted and upper-cased",
			msg:    ActionRun,
			fields: []zap.Field{zap.String("script", "deploy"), zap.String("host", "web-01"), zap.Int("exit", 0)},
			want:   "ACTION=run EXIT=0 HOST=web-01 LEVEL=info SCRIPT=deploy",
		},
		{
			name: "no fields",
			msg:  ActionReload,
			want: "ACTION=reload LEVEL=info",
		},
		{
			name: "quoting",
			msg:  ActionRun,
			fields: []zap.Field{
				zap.String("a_space", "a b"),
				zap.String("b_quote", `say "hi"`),
				zap.String("c_newline", "a\nb"),
				zap.String("d_equals", "a=b"),
				zap.String("e_control", "a\x01b\x7f"),
				zap.String("f_tab", "\t"),
				zap.String("g_cr", "a\rb"),
				zap.String("h_backslash", `C:\x`),
				zap.String("i_invalid_utf8", "\xff\xfe"),
				zap.String("j_line_sep", "a\u2028b"),
				zap.String("k_nbsp", "a\u00a0b"),
				zap.String("l_empty", ""),
				zap.String("m_unicode", "café"),
				zap.String("n_safe", "[::1]:7443,/var/log/x.log,user@host,50%,a+b~c^d*e!f?(g){h}"),
				zap.String("o_single_quote", "it's"),
			},
			want: `ACTION=run A_SPACE="a b" B_QUOTE="say \"hi\"" C_NEWLINE="a\nb" D_EQUALS="a=b" ` +
				`E_CONTROL="a\x01b\x7f" F_TAB="\t" G_CR="a\rb" H_BACKSLASH="C:\\x" I_INVALID_UTF8="\xff\xfe" ` +
				`J_LINE_SEP="a\u2028b" K_NBSP="a\u00a0b" LEVEL=info L_EMPTY="" M_UNICODE=café ` +
				`N_SAFE=[::1]:7443,/var/log/x.log,user@host,50%,a+b~c^d*e!f?(g){h} O_SINGLE_QUOTE="it's"`,
		},
		{
			name: "message quoted like any value",
			msg:  "hello world",
			want: `ACTION="hello world" LEVEL=info`,
		},
		{
			name: "empty message",
			msg:  "",
			want: `ACTION="" LEVEL=info`,
		},
		{
			name: "errors",
			msg:  ActionPing,
			fields: []zap.Field{
				zap.Error(errors.New("dial tcp 10.0.0.1:7443: connection refused")),
				zap.NamedError("cause", errors.New("eof")),
				zap.Error(nil),
			},
			want: `ACTION=ping CAUSE=eof ERROR="dial tcp 10.0.0.1:7443: connection refused" LEVEL=info`,
		},
		{
			name: "durations and times",
			msg:  ActionPing,
			fields: []zap.Field{
				zap.Duration("rtt", 12*time.Millisecond),
				zap.Duration("b", 1500*time.Microsecond),
				zap.Duration("c", 1500*time.Nanosecond),
				zap.Duration("d", 0),
				zap.Time("expiry", at),
				zap.Durations("e", []time.Duration{time.Second, 2 * time.Millisecond}),
			},
			want: "ACTION=ping B=1.5ms C=1.5µs D=0s E=1s,2ms EXPIRY=2024-05-01T12:00:00.123Z LEVEL=info RTT=12ms",
		},
		{
			name: "numbers and other scalars",
			msg:  ActionRun,
			fields: []zap.Field{
				zap.Bool("ok", true),
				zap.Int8("i8", -5),
				zap.Int64("i64", math.MinInt64),
				zap.Uint64("u64", math.MaxUint64),
				zap.Uint8("u8", 255),
				zap.Float64("f", 0.5),
				zap.Float64("big", 1e21),
				zap.Float64("nan", math.NaN()),
				zap.Float64("inf", math.Inf(-1)),
				zap.Float32("f32", 1.1),
				zap.Complex128("c", 1+2i),
				zap.Uintptr("p", 255),
				zap.Binary("bin", []byte{0, 1, 2}),
				zap.Binary("pad", []byte{1}),
				zap.ByteString("bs", []byte("a b")),
				zap.Stringer("addr", netip.MustParseAddr("::1")),
				zap.Reflect("m", map[string]int{"a": 1}),
			},
			want: `ACTION=run ADDR=::1 BIG=1e+21 BIN=AAEC BS="a b" C=(1+2i) F=0.5 F32=1.1 I64=-9223372036854775808 ` +
				`I8=-5 INF=-Inf LEVEL=info M="{\"a\":1}" NAN=NaN OK=true P=0xff PAD="AQ==" U64=18446744073709551615 U8=255`,
		},
		{
			name: "arrays",
			msg:  ActionRun,
			fields: []zap.Field{
				zap.Strings("hosts", []string{"web-01", "web-02"}),
				zap.Strings("spaced", []string{"a b", "c"}),
				zap.Strings("commas", []string{"a,b", "c"}),
				zap.Strings("empties", []string{"", "x"}),
				zap.Strings("none", nil),
				zap.Ints("ports", []int{7443, 7444}),
				zap.Bools("bools", []bool{true, false}),
				zap.Array("nested", zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
					_ = ae.AppendArray(zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
						ae.AppendInt(1)
						ae.AppendInt(2)
						return nil
					}))
					ae.AppendString("x")
					return nil
				})),
				zap.Objects("agents", []hostObj{{host: "a", port: 1}, {host: "b c", port: 2, token: "s3cr3t"}}),
			},
			want: `ACTION=run AGENTS="{HOST=a PORT=1},{HOST=\"b c\" PORT=2 TOKEN=[redacted]}" BOOLS=true,false ` +
				`COMMAS="\"a,b\",c" EMPTIES="\"\",x" HOSTS=web-01,web-02 LEVEL=info NESTED=[1,2],x NONE="" ` +
				`PORTS=7443,7444 SPACED="a b,c"`,
		},
		{
			name: "objects flattened with dotted keys",
			msg:  ActionPairApprove,
			fields: []zap.Field{
				zap.Dict("tags", zap.String("role", "web"), zap.String("dc", "fra 1")),
				zap.Dict("a", zap.Dict("b", zap.Int("c", 1))),
				zap.Dict("empty"),
				zap.Object("agent", hostObj{host: "web-01", port: 7443}),
				zap.Inline(hostObj{host: "inline", port: 1}),
			},
			want: `ACTION=pair-approve A.B.C=1 AGENT.HOST=web-01 AGENT.PORT=7443 HOST=inline LEVEL=info PORT=1 ` +
				`TAGS.DC="fra 1" TAGS.ROLE=web`,
		},
		{
			name:   "namespace",
			msg:    ActionRun,
			fields: []zap.Field{zap.String("before", "1"), zap.Namespace("agent"), zap.String("port", "7443")},
			want:   "ACTION=run AGENT.PORT=7443 BEFORE=1 LEVEL=info",
		},
		{
			name:   "with fields and names",
			with:   []zap.Field{zap.String("reqid", "r1"), zap.String("host", "old")},
			named:  []string{"agent", "listener"},
			msg:    ActionPing,
			fields: []zap.Field{zap.String("host", "new"), zap.String("addr", "10.0.0.1")},
			want:   "ACTION=ping ADDR=10.0.0.1 HOST=new LEVEL=info LOGGER=agent.listener REQID=r1",
		},
		{
			name:   "with namespace applies to entry fields",
			with:   []zap.Field{zap.Namespace("ctx"), zap.String("a", "1")},
			msg:    ActionRun,
			fields: []zap.Field{zap.String("b", "2")},
			want:   "ACTION=run CTX.A=1 CTX.B=2 LEVEL=info",
		},
		{
			name:   "duplicate keys: last wins",
			msg:    ActionRun,
			fields: []zap.Field{zap.String("host", "a"), zap.Int("exit", 1), zap.String("HOST", "b"), zap.Int("exit", 2)},
			want:   "ACTION=run EXIT=2 HOST=b LEVEL=info",
		},
		{
			name: "fields named like the encoder's own keys are renamed",
			with: []zap.Field{zap.String("logger", "w")},
			msg:  ActionRun,
			fields: []zap.Field{
				zap.String("action", "evil"), zap.String("Level", "x"), zap.String("ts", "t"),
				zap.String("caller", "c"), zap.String("stack", "s"),
				zap.Dict("sub", zap.String("level", "nested is fine")),
			},
			want: `ACTION=run FIELD_ACTION=evil FIELD_CALLER=c FIELD_LEVEL=x FIELD_LOGGER=w FIELD_STACK=s FIELD_TS=t ` +
				`LEVEL=info SUB.LEVEL="nested is fine"`,
		},
		{
			name: "keys sanitised",
			msg:  ActionRun,
			fields: []zap.Field{
				zap.String("bad key=x\n", "v"),
				zap.String("", "empty"),
				zap.String("héllo", "h"),
				zap.String("a.b-c_d", "ok"),
			},
			want: "ACTION=run A.B-C_D=ok BAD_KEY_X_=v H_LLO=h LEVEL=info _=empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := kvLogger(&buf, EncoderConfig{})
			for _, n := range tt.named {
				l = l.Named(n)
			}
			l.With(tt.with...).Info(tt.msg, tt.fields...)
			if diff := cmp.Diff(tt.want+"\n", buf.String()); diff != "" {
				t.Errorf("line (-want +got):\n%s", diff)
			}
			// Whatever the fields, the line must parse back.
			if _, err := parseKV(strings.TrimSuffix(buf.String(), "\n")); err != nil {
				t.Errorf("line does not parse: %v", err)
			}
		})
	}
}

func TestKVLevelsAndOptionalKeys(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	enc := NewKVEncoder(EncoderConfig{Time: true, Caller: true, Stack: true})
	ent := zapcore.Entry{
		Level:   zapcore.WarnLevel,
		Time:    at,
		Message: ActionAuthDeny,
		Caller:  zapcore.EntryCaller{Defined: true, File: "/src/roles/agent/serve.go", Line: 42},
		Stack:   "goroutine 1:\n\tmain.go:1",
	}
	buf, err := enc.EncodeEntry(ent, []zap.Field{zap.String("user", "bob")})
	if err != nil {
		t.Fatal(err)
	}
	want := `ACTION=auth-deny CALLER=agent/serve.go:42 LEVEL=warn STACK="goroutine 1:\n\tmain.go:1" ` +
		"TS=2025-01-02T03:04:05.006Z USER=bob\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("line (-want +got):\n%s", diff)
	}

	// Off by default: no TS, CALLER or STACK even when the entry has them.
	buf, _ = NewKVEncoder(EncoderConfig{}).EncodeEntry(ent, nil)
	if diff := cmp.Diff("ACTION=auth-deny LEVEL=warn\n", buf.String()); diff != "" {
		t.Errorf("default line (-want +got):\n%s", diff)
	}

	for lvl, want := range map[zapcore.Level]string{
		zapcore.DebugLevel: "debug", zapcore.InfoLevel: "info", zapcore.ErrorLevel: "error",
	} {
		buf, _ := NewKVEncoder(EncoderConfig{}).EncodeEntry(zapcore.Entry{Level: lvl, Message: "x"}, nil)
		if got := buf.String(); got != "ACTION=x LEVEL="+want+"\n" {
			t.Errorf("level %v: got %q", lvl, got)
		}
	}
}

// Encoding must not change the encoder's context: two entries from one
// With logger get the same context, and siblings don't see each other.
func TestKVContextIsolation(t *testing.T) {
	var buf bytes.Buffer
	base := kvLogger(&buf, EncoderConfig{}).With(zap.String("z", "1"), zap.String("a", "1"))
	l1 := base.With(zap.String("one", "1"))
	l2 := base.With(zap.String("two", "2"))
	l1.Info("x", zap.String("m", "1"))
	l1.Info("x")
	l2.Info("x")
	base.Info("x")
	want := "ACTION=x A=1 LEVEL=info M=1 ONE=1 Z=1\n" +
		"ACTION=x A=1 LEVEL=info ONE=1 Z=1\n" +
		"ACTION=x A=1 LEVEL=info TWO=2 Z=1\n" +
		"ACTION=x A=1 LEVEL=info Z=1\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestKVInjection(t *testing.T) {
	evil := "a\nACTION=evil HOST=b"
	var buf bytes.Buffer
	l := kvLogger(&buf, EncoderConfig{})
	Event(l, ActionRun, zap.String("host", evil), zap.String("script", "x ACTION=evil"))
	out := buf.String()

	if n := strings.Count(out, "\n"); n != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("want exactly one line, got %d newlines: %q", n, out)
	}
	for _, line := range strings.Split(out, "\n")[1:] {
		if strings.HasPrefix(line, "ACTION=") {
			t.Fatalf("second ACTION at line start: %q", out)
		}
	}
	got, err := parseKV(strings.TrimSuffix(out, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"ACTION", "run"}, {"HOST", evil}, {"LEVEL", "info"}, {"SCRIPT", "x ACTION=evil"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed line (-want +got):\n%s", diff)
	}
}

func TestKVConcurrent(t *testing.T) {
	var buf bytes.Buffer
	core := zapcore.NewCore(NewKVEncoder(EncoderConfig{Time: true}), zapcore.Lock(zapcore.AddSync(&buf)), zapcore.InfoLevel)
	l := zap.New(core).With(zap.String("reqid", "r"))
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				Event(l, ActionRun, zap.Int("g", i), zap.Int("j", j), zap.Strings("h", []string{"a", "b c"}))
			}
		}()
	}
	for range 8 {
		<-done
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("got %d lines, want 400", len(lines))
	}
	for _, line := range lines {
		kv, err := parseKV(line)
		if err != nil {
			t.Fatal(err)
		}
		if len(kv) != 7 || kv[0][0] != "ACTION" || kv[5][0] != "REQID" {
			t.Fatalf("unexpected line %q", line)
		}
	}
}

func BenchmarkKVEncode(b *testing.B) {
	enc := NewKVEncoder(EncoderConfig{Time: true}).Clone()
	enc.AddString("reqid", "3f2a9c")
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Now(), LoggerName: "dispatcher", Message: ActionRun}
	fields := []zap.Field{
		zap.String("host", "web-01.example.com"),
		zap.String("script", "deploy"),
		zap.Int("exit", 0),
		zap.Duration("rtt", 12*time.Millisecond),
		zap.String("user", "ci bot"),
	}
	b.ReportAllocs()
	for b.Loop() {
		buf, err := enc.EncodeEntry(ent, fields)
		if err != nil {
			b.Fatal(err)
		}
		buf.Free()
	}
}

func FuzzKVValue(f *testing.F) {
	for _, s := range []string{
		"", "plain", "a b", "a\nACTION=evil", "\x00", "\xff", "\u2028", `"`, `\`, "é", "12µs",
		"a\r\nb", "\u0085", "\u202e", "=", "[redacted]", "\"\\\"",
	} {
		f.Add(s)
	}
	enc := NewKVEncoder(EncoderConfig{})
	f.Fuzz(func(t *testing.T, s string) {
		buf, err := enc.EncodeEntry(zapcore.Entry{Message: s}, []zap.Field{zap.String("v", s)})
		if err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		buf.Free()
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("no trailing newline: %q", out)
		}
		line := out[:len(out)-1]
		for i := 0; i < len(line); i++ {
			if c := line[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("control byte %#x in line %q", c, out)
			}
		}
		for _, r := range []string{"\u0085", "\u2028", "\u2029"} {
			if strings.Contains(line, r) {
				t.Fatalf("line separator %q in line %q", r, out)
			}
		}
		got, err := parseKV(line)
		if err != nil {
			t.Fatalf("%v in %q", err, out)
		}
		want := [][2]string{{"ACTION", s}, {"LEVEL", "info"}, {"V", s}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", s, diff)
		}
	})
}
