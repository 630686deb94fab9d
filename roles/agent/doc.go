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
// Every request is checked against the live revocation list again, so a
// connection kept alive from before a revocation is refused too.
//
// The certificate lifecycle (lifecycle.go): /renew answers a certificate
// request for the agent's current key; /renew-complete installs a renewed
// certificate for that key from the agent's CA, writing agent.crt
// atomically and swapping it into the snapshot (session tickets are bound
// to the certificate, so resumed sessions see the new one); /revocations
// merges pushed dispatcher serials into revoked-serials and the snapshot;
// /dispatcher-serial moves the legacy pin to the caller's own serial. The
// last two need a certificate with the dispatcher role. Snapshot swaps,
// reloads included, are serialised by one mutex.
//
// # Local commands
//
// request-pairing is the agent's side of pairing (WIRE.md, port 7444,
// through wire.PairingClient). Before anything is sent it checks that the
// directories of cert, key and ca can be written and that the agent is not
// paired already (--force). It makes a new key, which never leaves the host,
// and keeps the pending material beside the key until the answer:
// KEY.pending (0600), agent.csr (0644) and pairing.json (0600: request id,
// nonce, dispatcher address, CA pin, the dispatcher certificate the request
// travelled to, deadline). The waiting — in the foreground, or in a
// background process started as "request-pairing --resume STATE" in a
// session of its own — ends in conclude, under a flock of the key's
// directory and only while pairing.json still names the request (a newer
// request supersedes an older one): an approval is checked (nonce, our key,
// an agent certificate for our host name from the CA sent, which must be the
// pinned one and must have signed the dispatcher certificates seen) and
// stored atomically (ca.crt 0644, agent.key 0640, agent.crt 0644); a denial
// (exit 3), a timeout (exit 2) or any refusal (exit 1) removes the pending
// material and stores nothing.
//
// pairing-status, self-check (ping-self) and self-ping read the same files
// with the loaders the daemon uses (snapshot.go): pairing-status and
// self-check touch no network; self-ping connects to the running listener
// with the agent's own certificate, which must be refused.
package agent
