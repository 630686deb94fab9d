// Package dispatcher is the control-host CLI (the dispatcher role): it
// turns flags into calls of roles/internal/control and prints the result as
// text or JSON. It holds no network or crypto logic of its own.
//
// Every command accepts the global options (--config, --port, --json,
// --username, --token) before or after its arguments. With --json, errors
// are printed as {"ok":false,"error":…} on stdout and the exit code is
// still non-zero.
package dispatcher
