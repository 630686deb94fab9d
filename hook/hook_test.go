package hook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d       Decision
		allowed bool
		code    int
		err     string
		outcome string
	}{
		{Decision{Outcome: Allow}, true, 0, "authorised", "allow"},
		{Decision{Denied, "denied by auth hook"}, false, 1, "not authorised: denied by auth hook", "denied"},
		{Decision{BadCredentials, "bad credentials"}, false, 2, "not authorised: bad credentials", "bad-credentials"},
		{Decision{InsufficientPrivilege, "insufficient privilege"}, false, 3, "not authorised: insufficient privilege", "insufficient-privilege"},
		{Decision{Denied, "hook exited 4"}, false, 1, "not authorised: hook exited 4", "denied"},
		// The zero value denies.
		{Decision{}, false, 1, "not authorised: denied", "denied"},
		{Decision{Outcome: BadCredentials}, false, 2, "not authorised: bad-credentials", "bad-credentials"},
		{Decision{Outcome(42), "odd"}, false, 1, "not authorised: odd", "Outcome(42)"},
	}
	for _, tt := range tests {
		if got := tt.d.Allowed(); got != tt.allowed {
			t.Errorf("%#v.Allowed() = %v, want %v", tt.d, got, tt.allowed)
		}
		if got := tt.d.Code(); got != tt.code {
			t.Errorf("%#v.Code() = %d, want %d", tt.d, got, tt.code)
		}
		if got := tt.d.Error(); got != tt.err {
			t.Errorf("%#v.Error() = %q, want %q", tt.d, got, tt.err)
		}
		if got := tt.d.Outcome.String(); got != tt.outcome {
			t.Errorf("%#v.Outcome.String() = %q, want %q", tt.d, got, tt.outcome)
		}
	}
}

// The exit code of the hook and Decision.Code agree for the four answers.
func TestFromExitCode(t *testing.T) {
	t.Parallel()
	for code := range 256 {
		d := fromExit(code)
		want := code
		if code > 3 {
			want = 1
		}
		if d.Code() != want {
			t.Errorf("exit %d: Code() = %d, want %d", code, d.Code(), want)
		}
		if d.Allowed() != (code == 0) {
			t.Errorf("exit %d: Allowed() = %v", code, d.Allowed())
		}
	}
}

func TestContextMarshalJSON(t *testing.T) {
	t.Parallel()
	ts := time.Date(2025, 5, 1, 14, 0, 0, 500_000_000, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name string
		c    Context
		want string
	}{
		{
			name: "dispatcher side",
			c: Context{
				Action: "run", Script: "deploy", Hosts: []string{"web-01", "web-02"},
				Args: []string{"a b", "<&>", "x\ny"}, Username: "alice", Token: "t",
				SourceIP: "127.0.0.1", Timestamp: ts,
			},
			want: `{"action":"run","script":"deploy","hosts":["web-01","web-02"],"args":["a b","<&>","x\ny"],` +
				`"username":"alice","token":"t","source_ip":"127.0.0.1","timestamp":"2025-05-01T12:00:00.5Z"}`,
		},
		{
			name: "agent side, nil args",
			c:    Context{Action: "discovery", SourceIP: "192.0.2.1", Timestamp: ts},
			want: `{"action":"discovery","script":"","args":[],"username":"","token":"","source_ip":"192.0.2.1","timestamp":"2025-05-01T12:00:00.5Z"}`,
		},
		{
			name: "empty hosts are left out too",
			c:    Context{Action: "ping", Hosts: []string{}, Args: []string{}, Timestamp: ts},
			want: `{"action":"ping","script":"","args":[],"username":"","token":"","source_ip":"","timestamp":"2025-05-01T12:00:00.5Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, v := range []any{tt.c, &tt.c} {
				got, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				// json.Marshal escapes <, > and & in a Marshaler's output
				// again; the hook's own encoder does not (runner tests).
				var a, b any
				if err := json.Unmarshal(got, &a); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal([]byte(tt.want), &b); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(b, a); diff != "" {
					t.Errorf("%T: (-want +got):\n%s", v, diff)
				}
			}
			got, err := tt.c.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("MarshalJSON:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	got := []string{string(ActionRun), string(ActionPing), string(ActionDiscovery), string(ActionAPI)}
	if diff := cmp.Diff([]string{"run", "ping", "discovery", "api"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
