// Package agent is the agent role (dispatcher-agent): the daemon that
// serves the operational protocol on 7443 (WIRE.md) and the agent's local
// commands.
//
// The daemon keeps everything a request needs — agent.conf, the allowlist,
// the revoked serials, the legacy dispatcher-serial pin, its certificate —
// in one immutable snapshot. SIGHUP builds a new snapshot and swaps it in
// atomically; requests in flight keep the one they started with, and the
// listening socket stays open. A snapshot that fails to load is logged and
// the old one stays.
//
// Identity is checked in the TLS handshake (VerifyConnection, so resumed
// sessions are checked too): the client must chain to the CA, carry
// clientAuth and the dispatcher role, and not be revoked. A legacy
// certificate without a role (Perl dispatcher) passes the handshake and is
// then held to the dispatcher-serial pin: 403 "serial mismatch" otherwise.
package agent
