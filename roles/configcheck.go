package roles

import (
	"fmt"

	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
)

// The kinds of configuration file CheckConfig reads.
const (
	DispatcherConf = "dispatcher.conf"
	AgentConf      = "agent.conf"
	ScriptsConf    = "scripts.conf"
)

// CheckConfig loads the file at path as kind (DispatcherConf, AgentConf or
// ScriptsConf) with the loader the roles use, and returns the warnings it
// would log (unknown keys, the legacy format, skipped scripts.conf entries)
// or the error that stops it loading. The agent's host name, when the file
// sets none, is not looked up. It lets tools outside roles, such as the
// test of the examples in the documentation, check a file.
func CheckConfig(kind, path string) ([]string, error) {
	var warnings []config.Warning
	switch kind {
	case DispatcherConf:
		c, err := config.LoadDispatcher(path, nil)
		if err != nil {
			return nil, err
		}
		warnings = c.Warnings
	case AgentConf:
		c, err := config.LoadAgent(path, nil, func() (string, error) { return "localhost", nil })
		if err != nil {
			return nil, err
		}
		warnings = c.Warnings
	case ScriptsConf:
		_, w, err := config.LoadScripts(path, nil)
		if err != nil {
			return nil, err
		}
		warnings = w
	default:
		return nil, fmt.Errorf("unknown kind of configuration file %q: want %s, %s or %s", kind, DispatcherConf, AgentConf, ScriptsConf)
	}
	out := make([]string, len(warnings))
	for i, w := range warnings {
		out[i] = w.String()
	}
	return out, nil
}
