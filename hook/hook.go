package hook

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Action names what a request wants to do; it is the "action" of a
// [Context]. The values below are the ones dispatcher sends today; the
// field is free text and passed to the hook as it is.
type Action string

const (
	ActionRun       Action = "run"       // run a script (dispatcher CLI, agent, API)
	ActionPing      Action = "ping"      // ping agents (dispatcher CLI, API)
	ActionDiscovery Action = "discovery" // list what an agent offers (agent /capabilities, API)
	ActionAPI       Action = "api"       // any other HTTP API call
)

// Context is what a hook is asked about. It reaches the hook as one JSON
// object on stdin (the json tags below) and as DISPATCHER_* environment
// variables; see the package documentation.
type Context struct {
	Action    string    `json:"action"`          // see Action
	Script    string    `json:"script"`          // the script name ("" for ping and discovery)
	Hosts     []string  `json:"hosts,omitempty"` // dispatcher side only; nil on agents, and then left out
	Args      []string  `json:"args"`            // the script's arguments; nil is sent as []
	Username  string    `json:"username"`        // who asks (--username, $USER, or what the dispatcher forwarded)
	Token     string    `json:"token"`           // their credential; never logged, never in a Reason
	SourceIP  string    `json:"source_ip"`       // 127.0.0.1 for the CLI, the dispatcher's address on an agent
	Timestamp time.Time `json:"timestamp"`       // sent in UTC, RFC 3339; zero means "now" to Check
}

// plainContext is Context without its methods, so that encoding it does
// not call MarshalJSON again.
type plainContext Context

// MarshalJSON encodes c as the hook receives it: args is [] rather than
// null when there are none, hosts is left out when there are none, and the
// timestamp is in UTC. Characters <, > and & are written as they are.
func (c Context) MarshalJSON() ([]byte, error) {
	b, err := encodeJSON(plainContext(c.normalised()))
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b, []byte("\n")), nil
}

// normalised returns c with non-nil Args and a UTC Timestamp.
func (c Context) normalised() Context {
	if c.Args == nil {
		c.Args = []string{}
	}
	c.Timestamp = c.Timestamp.UTC()
	return c
}

// encodeJSON is the one JSON encoding of everything a hook receives (the
// stdin object and DISPATCHER_ARGS_JSON), so that both spell strings the
// same way. The result ends in a newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Outcome is the kind of a [Decision]. Its zero value is Denied, so a
// zero Decision never allows. The numeric values are not the hook's exit
// codes: use [Decision.Code] for those.
type Outcome int

const (
	Denied                Outcome = iota // exit 1, or anything that is not a clean 0, 2 or 3
	Allow                                // exit 0
	BadCredentials                       // exit 2
	InsufficientPrivilege                // exit 3
)

// String returns "allow", "denied", "bad-credentials" or
// "insufficient-privilege" (the outcome field of log lines).
func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Denied:
		return "denied"
	case BadCredentials:
		return "bad-credentials"
	case InsufficientPrivilege:
		return "insufficient-privilege"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Decision is the answer of [Runner.Check].
type Decision struct {
	Outcome Outcome
	// Reason says why a request was refused ("" when allowed). It is safe to
	// show to the caller: it never contains the token, nor anything the
	// hook printed.
	Reason string
}

// Allowed reports whether the request may go ahead.
func (d Decision) Allowed() bool { return d.Outcome == Allow }

// Code is the decision as a number, as the hook's exit code and the API's
// "code" field have it: 0 allow, 1 denied, 2 bad credentials, 3 insufficient
// privilege. An Outcome outside these is 1.
func (d Decision) Code() int {
	switch d.Outcome {
	case Allow:
		return 0
	case BadCredentials:
		return 2
	case InsufficientPrivilege:
		return 3
	}
	return 1
}

// Error returns "not authorised: REASON", the text an agent answers a
// refused request with (REASON being the outcome when Reason is empty).
// It is meant for refusals: for an allowing decision it returns
// "authorised". A Decision is a value, not an error; check Allowed first.
func (d Decision) Error() string {
	if d.Allowed() {
		return "authorised"
	}
	reason := d.Reason
	if reason == "" {
		reason = d.Outcome.String()
	}
	return "not authorised: " + reason
}

func deny(reason string) Decision { return Decision{Outcome: Denied, Reason: reason} }
