package control

import (
	"context"
	"time"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

// AuthDeniedError is a refusal by the auth hook. Its text is the hook's
// decision ("not authorised: bad credentials"); Code is the API's code
// (1 denied, 2 bad credentials, 3 insufficient privilege).
type AuthDeniedError struct{ Decision hook.Decision }

func (e *AuthDeniedError) Error() string { return e.Decision.Error() }

// Code is 1, 2 or 3 as the hook decided.
func (e *AuthDeniedError) Code() int { return e.Decision.Code() }

// HookAuthorizer turns an auth hook into Options.Authorize: every call asks
// the hook with the request's context and sourceIP (127.0.0.1 for the CLI,
// the client's address for the API). With no hook (nil) every call is
// allowed, as the Perl dispatcher did for its CLI.
func HookAuthorizer(r *hook.Runner, sourceIP string, now func() time.Time) func(context.Context, AuthRequest) error {
	if r == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, a AuthRequest) error {
		action := a.Action
		if action == logging.ActionDiscover {
			action = string(hook.ActionDiscovery) // the agents' name for it
		}
		d := r.Check(ctx, hook.Context{Action: action, Script: a.Script, Hosts: a.Hosts, Args: a.Args,
			Username: a.Username, Token: a.Token, SourceIP: sourceIP, Timestamp: now()})
		if !d.Allowed() {
			return &AuthDeniedError{Decision: d}
		}
		return nil
	}
}
