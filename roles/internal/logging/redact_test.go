package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const secret = "s3cr3t-value"

func TestSensitive(t *testing.T) {
	tests := map[string]bool{
		"token": true, "TOKEN": true, "Token": true,
		"password": true, "PassWord": true,
		"secret": true, "SECRET": true,
		"key_pem": true, "KEY_PEM": true,
		"api_token": true, "BOOTSTRAP_TOKEN": true, "_token": true, "x_Token": true,
		"tokens": false, "token_id": false, "tokenizer": false, "apitoken": false,
		"key": false, "pem": false, "secrets": false, "passwords": false, "": false,
		"host": false, "reqid": false,
	}
	for key, want := range tests {
		if got := Sensitive(key); got != want {
			t.Errorf("Sensitive(%q) = %v, want %v", key, got, want)
		}
	}
}

// redactionFields covers every way a secret can reach an encoder under a
// sensitive key: each field kind, nested objects, arrays of objects.
func redactionFields() []zap.Field {
	return []zap.Field{
		zap.String("token", secret),
		zap.String("Password", secret),
		zap.String("SECRET", secret),
		zap.String("key_pem", secret),
		zap.String("api_token", secret),
		zap.ByteString("x_token", []byte(secret)),
		zap.Binary("y_token", []byte(secret)),
		zap.Strings("z_token", []string{secret}),
		zap.Stringer("s_token", stringer(secret)),
		zap.Reflect("r_token", map[string]string{"v": secret}),
		zap.NamedError("e_token", errors.New(secret)),
		zap.Dict("auth", zap.String("user", "bob"), zap.String("token", secret)),
		zap.Object("agent", hostObj{host: "a", port: 1, token: secret}),
		zap.Objects("agents", []hostObj{{host: "b", port: 2, token: secret}}),
		zap.Dict("o_token", zap.String("inner", secret)),
		zap.Inline(hostObj{host: "c", port: 3, token: secret}),
		zap.String("tokens", "kept"),
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestRedactionKV(t *testing.T) {
	var buf bytes.Buffer
	l := kvLogger(&buf, EncoderConfig{}).With(zap.String("bootstrap_token", secret))
	Event(l, ActionRun, redactionFields()...)
	want := `ACTION=run AGENT.HOST=a AGENT.PORT=1 AGENT.TOKEN=[redacted] ` +
		`AGENTS="{HOST=b PORT=2 TOKEN=[redacted]}" API_TOKEN=[redacted] AUTH.TOKEN=[redacted] AUTH.USER=bob ` +
		`BOOTSTRAP_TOKEN=[redacted] E_TOKEN=[redacted] HOST=c KEY_PEM=[redacted] LEVEL=info O_TOKEN=[redacted] ` +
		`PASSWORD=[redacted] PORT=3 R_TOKEN=[redacted] SECRET=[redacted] S_TOKEN=[redacted] TOKEN=[redacted] ` +
		`TOKENS=kept X_TOKEN=[redacted] Y_TOKEN=[redacted] Z_TOKEN=[redacted]` + "\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("line (-want +got):\n%s", diff)
	}
}

func TestRedactionJSON(t *testing.T) {
	var buf bytes.Buffer
	core := zapcore.NewCore(NewJSONEncoder(EncoderConfig{}), zapcore.AddSync(&buf), zapcore.InfoLevel)
	l := zap.New(core).With(
		zap.String("bootstrap_token", secret),
		zap.Dict("ctx", zap.String("password", secret), zap.String("user", "ci")),
	)
	Event(l, ActionRun, redactionFields()...)
	if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), "czNjcjN0") {
		t.Fatalf("secret in output: %s", buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{
		"action":          "run",
		"level":           "info",
		"bootstrap_token": Redacted,
		"ctx":             map[string]any{"password": Redacted, "user": "ci"},
		"token":           Redacted,
		"Password":        Redacted,
		"SECRET":          Redacted,
		"key_pem":         Redacted,
		"api_token":       Redacted,
		"x_token":         Redacted,
		"y_token":         Redacted,
		"z_token":         Redacted,
		"s_token":         Redacted,
		"r_token":         Redacted,
		"e_token":         Redacted,
		"auth":            map[string]any{"user": "bob", "token": Redacted},
		"agent":           map[string]any{"host": "a", "port": 1.0, "token": Redacted},
		"agents":          []any{map[string]any{"host": "b", "port": 2.0, "token": Redacted}},
		"o_token":         Redacted,
		"host":            "c",
		"port":            3.0,
		"tokens":          "kept",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

// Redaction must not modify the caller's fields.
func TestRedactFieldsCopies(t *testing.T) {
	fields := []zap.Field{zap.String("host", "a"), zap.String("token", secret)}
	out := redactFields(fields)
	if fields[1].String != secret {
		t.Errorf("caller's field changed to %q", fields[1].String)
	}
	if out[1].String != Redacted {
		t.Errorf("redacted field is %q", out[1].String)
	}
	plain := []zap.Field{zap.String("host", "a"), zap.Int("exit", 1)}
	if got := redactFields(plain); &got[0] != &plain[0] {
		t.Errorf("fields without secrets were copied")
	}
}
