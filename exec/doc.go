// Package exec runs the agent's allowlisted scripts: it decides which
// names may run ([Allowlist]), checks argument lists ([CheckArgs]) and
// executes a script safely ([Runner]). It knows nothing of configuration
// files, the network or the wire format: callers hand it plain values
// (scripts.conf entries, script_dirs, a request) and get back plain values.
//
// # Allowlist
//
// [NewAllowlist] takes the entries of scripts.conf and the script_dirs and
// keeps the entries that can be run, returning a [Warning] for each one it
// skips: an invalid name (names match [NamePattern]; see [ValidName]), a
// relative path, a missing file, something that is not a regular file, an
// environment that cannot be carried, or, when script_dirs is set, a path
// that resolves (every symbolic link followed) outside all of them. Paths
// are compared by whole elements, so /opt/scripts2/x is not inside
// /opt/scripts. The first entry of a name wins. An [Allowlist] never changes
// once built; a reload builds another.
//
// # Running
//
// [Runner.Run] takes a [Request] and always returns a [Result]. The script
// is executed directly (execve of the absolute path, argv[0] being the
// configured path, then the arguments byte for byte): never a shell, never
// a PATH search. When [Request.ScriptDirs] names directories the path is
// resolved again just before exec and must still be inside one of them;
// the resolved path is what is executed. The script runs in its own process
// group, with working directory /, its stdin a pipe carrying
// [Request.Stdin] and then closed, and stdout and stderr read through
// separate pipes, each kept up to [Request.OutputLimit] bytes (16 MiB by
// default) while the rest is read and discarded.
//
// Its environment is built from nothing:
//
//	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
//	LANG=C.UTF-8            (fixed, whatever the agent's own LANG)
//	HOME=/                  (the user's home directory when the entry names a user)
//	USER=, LOGNAME=         (only when the entry names a user)
//
// then [Request.Env] (DISPATCHER_REQID and the like) and finally the
// entry's Env, each overriding what came before. Nothing of the agent's own
// environment is passed on.
//
// An entry's User and Group (names or numeric ids) are looked up when the
// script starts; the script then runs with that uid, gid and the user's
// supplementary groups. Only a root agent can switch; an agent that is not
// root refuses an entry naming any other user or group.
//
// When [Request.Timeout] expires or the context is done, the whole process
// group gets SIGTERM, then SIGKILL after [Runner.Grace]; once the script has
// exited, anything left of its group is sent SIGKILL too. A script that
// exits on its own leaves its background processes alone, but Run stops
// reading output they hold open after [Runner.DrainTimeout], so a daemonised
// grandchild cannot hold the response.
//
// # Results and errors
//
// Result.Exit follows SPEC §5:
//
//   - 0, or N: the script exited by itself with that code; Error is "".
//   - 126 ([ExitFailed]) with Signal set ("SIGSEGV", "SIGKILL", … or
//     "signal N"): it died of a signal; Error is "killed by SIGSEGV".
//   - 126 with TimedOut: killed because the timeout expired; Error is
//     "timed out after 5s". Signal names the signal it died of, if any.
//     A timed-out run is never reported with the script's own code, even
//     if it caught SIGTERM and exited 0.
//   - 126 with Cancelled: killed (or never started) because the context was
//     done; Error is "cancelled".
//   - 126 otherwise: the script could not be started. Error is
//     "script path outside script_dirs" when the exec-time check refused
//     it, and "exec failed: REASON" for everything else, REASON being the
//     system's words ("permission denied", "exec format error", "no such
//     file or directory", with a hint when the file exists but its #!
//     interpreter does not) or what was wrong with the request (a relative
//     path, a bad argument list, an unknown user, switching user without
//     root).
//
// -1 is never produced here: it is the dispatcher's code for failures on
// its side. A broken pipe while writing stdin is not an error: a script
// may exit without reading it and its own exit code stands.
//
// [Allowlist.Lookup] returns a *[NotAllowedError] whose message is always
// "script not permitted", the text the agent answers, whether the name is
// malformed or merely absent; its Reason field says which, for the log.
// [CheckArgs] returns an *[ArgsError] whose message says which rule was
// broken, for a 400 answer.
package exec
