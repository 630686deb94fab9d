// Package dispatcher is the control-host CLI (the dispatcher role): it
// turns flags into calls of roles/internal/control and prints the result
// with roles/internal/output as text or JSON. It holds no network or crypto
// logic of its own.
//
// Commands: setup-ca, setup-dispatcher, list-requests, approve, deny,
// list-agents, unpair, run, ping, discover, status, list-locks, demo
// (pairing-mode is the pairing role's serve, wired in roles). docs/CLI.md
// describes each one, its options, output formats and exit codes.
//
// Every command accepts the global options (--config, --port, --json,
// --username, --token) before or after its arguments. With --json, errors
// are printed as {"ok":false,"error":…} on stdout and the exit code is
// still non-zero. run exits 0 only when every host exited 0; ping and
// discover exit 1 when any host failed.
package dispatcher
