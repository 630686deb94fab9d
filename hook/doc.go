// Package hook will run the auth hook executable: the request context as
// JSON on stdin and DISPATCHER_* variables, exit code mapped to a typed
// decision, hook_timeout enforced by killing its process group. It is built
// with the auth hooks issue; it may import exec, the standard library and
// zap, nothing else.
package hook
