// Package exec will hold the agent's allowlist (script names, absolute
// paths, script_dirs) and the runner (execve without a shell, own process
// group, timeouts, output caps, JSON context on stdin). It is built with the
// operational path; it imports only the standard library and zap.
package exec
