// Package fleetsim runs a fleet of real agents in one process, for the
// fleet benchmark and its smoke test.
//
// Start makes a CA and a dispatcher certificate (with pki, as setup-ca and
// setup-dispatcher do), then for each of N agents a key and a certificate
// as pairing would issue them, an agent.conf, and a registry record with the
// agent's address and key fingerprint. Every agent is a real agent server
// (roles/agent.Open, the code "dispatcher-agent serve" runs) on its own
// 127.0.0.1 port with mutual TLS, the allowlist, the limits and the logging
// of a real agent. The dispatcher configuration it writes
// (Fleet.DispatcherConf) makes the real dispatcher drive the fleet as it
// would a real one: the names do not resolve, so it dials the registry's
// address and checks the certificate and the pinned key.
//
// The allowlist every agent shares: noop (/bin/true), echo (/bin/echo)
// and noop-1 … noop-16 (/bin/true again, so that concurrent runs on one
// agent do not meet the host:script lock). Options.Scripts gives an agent
// entries of its own beside them, in a scripts.conf of its own, and
// Options.Tags gives it the [tags] of its agent.conf; like a real agent's,
// they reach the registry only when "dispatcher discover" asks for them.
//
// Files are written without fsync: the fleet is thrown away after the run.
package fleetsim
