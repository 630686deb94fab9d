// Package hook runs the auth hook, the executable that is dispatcher's
// policy engine (SPEC §8): dispatcher has no access rules of its own, it
// asks the hook about every request and does what the hook's exit code
// says. The contract for hook authors is docs/HOOKS.md; this is the Go
// side of it.
//
// # Asking
//
// A [Runner] names the hook (Path, the auth_hook setting) and how long it
// may take (Timeout, hook_timeout, 10 s by default). [Runner.Check] takes a
// [Context] — action, script, hosts, args, username, token, source IP and
// timestamp — and returns a [Decision].
//
// The hook is executed directly: execve of the absolute path with no
// arguments, never a shell, never a PATH search. It runs in its own process
// group with working directory /, as the user the calling process runs as.
// Its stdin is the Context as one JSON object (see [Context.MarshalJSON]:
// args is [] rather than null, hosts is left out when empty, the timestamp
// is RFC 3339 in UTC) followed by a newline, then end of file. A hook that
// does not read its stdin is fine: a broken pipe is ignored and its exit
// code stands. Its stdout and stderr are the null device: nothing it prints
// is kept, so nothing it prints can leak into a reason or a log.
//
// Its environment is built from nothing; none of the calling process's
// variables are passed on:
//
//	DISPATCHER_ACTION     the action
//	DISPATCHER_SCRIPT     the script name
//	DISPATCHER_HOSTS      the hosts joined by commas ("" on agents)
//	DISPATCHER_ARGS       the args joined by spaces: deprecated, ambiguous
//	                      (an argument may hold spaces), kept for old hooks
//	DISPATCHER_ARGS_JSON  the args as a JSON array, encoded exactly as in
//	                      the stdin object
//	DISPATCHER_USERNAME   the username
//	DISPATCHER_TOKEN      the token
//	DISPATCHER_SOURCE_IP  the source IP
//	DISPATCHER_TIMESTAMP  the timestamp, as in the stdin object
//	LANG=C.UTF-8
//	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
//
// A context that an environment cannot carry is denied without starting
// the hook: a field holding a NUL byte, or a variable longer than
// [MaxEnvEntry] (about 128 KiB of arguments or host names).
//
// # Decisions
//
// The hook's exit code decides: 0 [Allow], 1 [Denied] ("denied by auth
// hook"), 2 [BadCredentials] ("bad credentials"), 3 [InsufficientPrivilege]
// ("insufficient privilege"). Everything else denies, with a reason saying
// what happened:
//
//   - another exit code N: "hook exited N";
//   - killed by a signal: "hook killed by SIGTERM" (the signal's name);
//   - still running after Timeout: its whole process group, children
//     included, is killed with SIGKILL: "hook timed out after 10s";
//   - ctx done before or while it runs: the group is killed: "cancelled";
//   - Path relative: "auth hook path "x" is not absolute"; missing:
//     "auth hook /x/y not found"; a directory or other non-regular file:
//     "auth hook /x/y is not a regular file"; no execute permission:
//     "auth hook /x/y is not executable"; anything else that stops it from
//     starting: "auth hook /x/y could not be started: REASON";
//   - Path empty, or a nil *Runner: "no auth hook configured".
//
// A hook that exits by itself leaves whatever it started in the background
// alone; only a timeout or cancellation kills the group.
//
// Whether a request is allowed when no hook is configured is the caller's
// decision, not this package's: the dispatcher CLI allows (as the Perl
// dispatcher did), the API applies api_auth_default. Callers check for an
// empty path and do not call Check then.
//
// A [Decision]'s Reason is safe to show to whoever asked: it never holds
// the token or any other field of the context, nor the hook's output. Its
// [Decision.Error] is the form an agent answers with ("not authorised:
// bad credentials") and [Decision.Code] the number the API's "code" field
// carries (0–3).
//
// # Logging
//
// Check logs every decision on Runner.Log, once: an auth-deny event at
// warn level for a refusal, auth-allow at debug level otherwise, with the
// fields request (the context's action; "action" is the event's own key),
// script, username, source_ip, outcome, reason, hook_exit (when the hook
// exited by itself) and took. The token is never logged. Callers do not
// log the refusal again.
package hook
