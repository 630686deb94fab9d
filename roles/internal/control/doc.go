// Package control is what the control host does, shared by the dispatcher
// CLI, the API and the pairing listener: the CA and dispatcher identity
// set-up, pairing (intake, approval, denial, expiry, unpairing and
// revocation), the fan-out of run, ping and discover to agents, and the
// certificate lifecycle: renewal, rotation and revocation.
//
// # Pairing
//
// [Pairing] works on a [store.PairingQueue], the [store.Registry] and the
// [store.Revocations]. [Pairing.Submit] checks what an agent sent
// ([CheckPairRequest]: host name, nonce, port, CSR size and signature),
// computes the 6-digit code with wire.PairingCode over the CSR and the
// dispatcher leaf the listener serves, and queues the request (one pending
// request per host name, pairing_max_queue at most, pairing_timeout to
// live). [Pairing.Approve] loads the CA, checks the request again, signs
// the CSR's public key for the requested host name for cert_days, writes
// the registry record (source IP, port, key fingerprint, serial, expiry)
// and records the answer, all exactly once per request however many
// approvals race. Re-pairing a registered host name needs replace, which
// revokes the old serial. [Pairing.Unpair] revokes the serial and removes
// the record. [Pairing.Poll] is the agent's view: an unknown request id
// and a wrong nonce are the same [ErrUnknownPairRequest].
//
// The engine reads the revocation list (Options.Revocations) at the start
// of every call and refuses an agent whose certificate serial is in it,
// during the handshake, before any request is sent.
//
// # Fan-out
//
// [Engine] holds one wire.Client per process (one connection pool with
// keep-alive and one TLS session cache). [Engine.Run], [Engine.Ping] and
// [Engine.Discover] take the hosts as the user named them ("name" or
// "name:port", see [ParseTarget]) and contact them from a bounded pool of
// Parallel goroutines. Each result is handed to the request's OnResult
// callback as it completes (completion order, from one goroutine: output
// can stream and a progress line can move), and the returned report holds
// the results in the order the hosts were given.
//
// A host's identity is its name: the agent certificate must carry it as a
// DNS SAN, chain to the dispatcher CA, have serverAuth and the agent role,
// and — when the registry records a key_fingerprint — hold that very key
// (SPEC §4). The name is dialled when it resolves, else the registry's ip;
// the port is the first of the host argument's, --port, the registry's,
// and 7443. Every per-host failure (resolution, connect, TLS, identity,
// timeout, refusal) is a result — exit -1 and an error text for run,
// status "error" for ping and discover — and never stops the other hosts.
//
// Every run gets a reqid ([NewReqID]: 16 hex digits, 64 random bits), takes
// its host:script locks before any network work, is stored as running and
// then with its results ([store.Runs]), and releases its locks when done.
// Options.Authorize is asked before all of that: it is where the auth hook
// plugs in.
//
// A run is stored again with the hosts done so far while it runs (at most
// once a second), and as cancelled when its context ends first.
//
// # Certificate lifecycle
//
// After every successful contact of a registered agent, on the same
// client, the engine renews the agent's certificate when less than half of
// cert_days is left (Options.CA, Options.CertDays): /renew, a check that
// the request is for the pinned key and names only the host, a signature
// with the CA (loaded once, when first needed), /renew-complete, and the
// registry's serial, expiry and last_renewal. It then pushes the dispatcher
// revocation list (store.DispatcherRevocations) to agents that have not
// accepted it, and after a rotation this dispatcher's serial to pending
// agents. None of it changes the caller's result: failures are logged at
// error level (ACTION=renew, revoke, rotate-cert). [Engine.Renew] renews
// now (dispatcher renew); [Engine.RenewDue] and [Engine.SweepRenewals] are
// the API's scheduled sweep. [RotateCert] replaces the dispatcher's own
// certificate and records the rotation, [SerialStatus] shows every agent's
// serial_status, [Revoke] revokes an agent or a dispatcher certificate,
// and [DescribeAgentCert] is what list-agents says of a record's
// certificate. An expired agent certificate is refused with advice to
// pair the agent again.
//
// # Runs of a long-lived process
//
// [Tracker] is how the API runs: [Tracker.Start] returns once a run holds
// its locks and is stored (or with the error that refused it), and the
// [LiveRun] can be waited for, cancelled ([LiveRun.Cancel] closes the
// connections to agents, which kill the script's process group) and
// followed through its [EventLog] (whole output lines per host and stream,
// each host's result, the end). [Tracker.Drain] stops new runs and cancels
// those still running after a grace period. [FollowStored] gives the same
// events for a run only the store knows (another process runs it, or it is
// over). [RequestCancel] asks the process running a run — another API
// node, a CLI — to cancel it through the store (store.Cancels); a Tracker
// asks the store for the requests of its runs in flight every half second,
// [Engine.Run] for its own, and each cancels the runs asked for. [GetRun]
// and [ReapLost] mark lost a run whose process has ended ([MarkLost]): on
// its own host by the process table, from any host when the store names
// the session holding the run's locks (store.SessionLocks, PostgreSQL).
// [Engine.CheckRun] and [Engine.CheckHosts] check a request as Run, Ping
// and Discover do first, for callers that ask the auth hook themselves.
//
// Functions take plain values (paths, durations, a *zap.Logger) and never
// see CLI flags or TOML. Errors are lowercase and wrapped; callers branch on
// *ExistsError (material already present, nothing was changed),
// *MissingCAError (no CA to sign with), *MissingIdentityError (no
// dispatcher certificate, key or CA to talk to agents with),
// *store.LockConflictError (a run refused because some of its host:script
// pairs are locked), *BadRequestError (bad hosts or script arguments:
// nothing was done), ErrShuttingDown (a Tracker draining),
// *NotCancellableError (a run of another process that cannot be asked to
// cancel), *InvalidPairRequestError, *store.PendingExistsError
// and *store.QueueFullError (a pairing request refused: 400, 409 and 429
// on the wire), *AlreadyPairedError (approve without replace of a
// registered host name) and *store.DecidedError (a request already
// decided or expired). Tokens are passed to agents and to Authorize only:
// never stored, never logged.
package control
