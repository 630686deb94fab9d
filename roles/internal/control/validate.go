package control

import (
	"errors"
	"fmt"

	"github.com/dispatcher-dev/dispatcher/exec"
)

// BadRequestError is a request that cannot be carried out as asked: bad or
// repeated hosts, too many of them, no script, script arguments over the
// limits, a negative timeout. Nothing was done. The API answers it 400.
type BadRequestError struct{ Err error }

func (e *BadRequestError) Error() string { return e.Err.Error() }

func (e *BadRequestError) Unwrap() error { return e.Err }

func badRequest(err error) error {
	if err == nil {
		return nil
	}
	return &BadRequestError{Err: err}
}

// CheckRun checks req's arguments as Run does first, without asking
// Options.Authorize, taking locks or contacting anyone: a
// *BadRequestError, or nil when Run would go on to authorise the run.
// Callers that authorise requests themselves (the API asks its own hook,
// with the caller's address) check first, so that a bad request is told
// apart from a refusal.
func (e *Engine) CheckRun(req RunRequest) error {
	if _, err := parseTargets(req.Hosts, e.o.MaxHosts); err != nil {
		return badRequest(err)
	}
	if req.Script == "" {
		return badRequest(errors.New("no script given"))
	}
	if err := exec.CheckArgs(req.Args); err != nil {
		return badRequest(fmt.Errorf("script arguments: %w", err))
	}
	if req.Timeout < 0 {
		return badRequest(errors.New("timeout must not be negative"))
	}
	if err := req.Rollout.Check(); err != nil {
		return err
	}
	return checkWidth(req.Port, req.Parallel)
}

// CheckHosts checks a host list as Ping and Discover do (Discover accepts
// an empty one: every registered agent).
func (e *Engine) CheckHosts(hosts []string, port, parallel int, emptyOK bool) error {
	if len(hosts) > 0 || !emptyOK {
		if _, err := parseTargets(hosts, e.o.MaxHosts); err != nil {
			return badRequest(err)
		}
	}
	return checkWidth(port, parallel)
}

func checkWidth(port, parallel int) error {
	if port < 0 || port > 65535 {
		return badRequest(fmt.Errorf("port %d: want 1-65535", port))
	}
	if parallel < 0 {
		return badRequest(fmt.Errorf("parallel %d: want at least 1", parallel))
	}
	return nil
}

// RegisteredHosts returns the host names of every registered agent, sorted:
// what Discover asks when given no hosts.
func (e *Engine) RegisteredHosts() ([]string, error) {
	agents, err := e.o.Registry.ListAgents()
	if err != nil {
		return nil, err
	}
	hosts := make([]string, len(agents))
	for i, a := range agents {
		hosts[i] = a.Hostname
	}
	return hosts, nil
}
