// Package postgres keeps the dispatcher's state in a PostgreSQL database
// (store = "postgres://…", SPEC §9), so that several dispatcher and API
// nodes behind a load balancer share one registry, pairing queue, set of
// stored runs, revocation lists and host:script locks: any node approves a
// request another received, answers /status for a run another started and
// sees its locks.
//
// [Open] connects (pgx; the URL, the PG* environment variables and the
// password file are read as libpq reads them, see Open), applies the
// schema migrations the database has not had and returns a [*Store],
// which implements store.Store with the contracts of the files store
// (store.Files): the same validation of host names and request ids, the
// same refusals and the same records. [Migrate] applies the migrations
// alone ("dispatcher store migrate"). [Store.Close] closes the
// connections.
//
// # Schema
//
// Migrations are the embedded files migrations/NNNN_name.sql, applied in
// order, each in a transaction that also records it in schema_migrations
// (version, name, applied), one node at a time under an advisory lock, so
// nodes starting together apply each once. The tables (migrations/0001,
// and run_cancels of 0002):
//
//	agents(hostname, record, last_contact)
//	                  record: agents/HOST.json as the files store writes it,
//	                  Extra fields byte for byte; last_contact: RecordContact
//	runs(reqid, status, updated, record)
//	                  record: runs/REQID.json; updated: the last SaveRun
//	pair_requests(reqid, hostname, status, created, expires, decided, record)
//	                  record: pairing/REQID.json, the source of truth
//	revocations(id, kind, serial, host, reason, at)
//	                  kind agent (revoked-serials) or dispatcher
//	                  (revoked-dispatcher-serials), in the order revoked
//	rotation(id = 1, record, updated)
//	                  record: rotation.json
//	lock_holders(host, script, holder, backend_pid, node, pid, reqid, username, started, acquired)
//	                  the held host:script locks, see below
//	run_cancels(reqid, requested)
//	                  requests to cancel a run (RequestCancel), deleted
//	                  with the run (a foreign key ON DELETE CASCADE)
//
// Records are text holding the JSON the files store writes, so a value
// reads back exactly as from the files store (times with their
// nanoseconds, unknown registry fields as written); the other columns
// serve the queries. Records and revoked serials brought in by "store
// import" (roles/internal/store/transfer) keep the bytes and spellings of
// the files they came from, Perl-written ones included; a later
// RevokeSerial of a number imported in another spelling adds a row in the
// canonical one, which revokes the same certificate.
//
// # Concurrency and failure
//
// Every call is safe from any goroutine and any node. The pairing queue
// is changed under a transaction-level advisory lock, the files store's
// queue.lock: AddPairRequest's checks (one pending request per host name,
// pairing_max_queue) hold across nodes, and [Store.DecidePairRequest]
// calls decide and records its decision in one transaction holding the
// request's row, so racing deciders on several nodes sign one certificate
// and the others get a *store.DecidedError. A node that dies in the middle
// leaves the request pending.
//
// A run's locks ([Store.Acquire]) live on a connection the run holds until
// release: a session advisory lock on a random key, and one lock_holders
// row per host:script pair naming that key, the session's backend pid and
// the holder (node, pid, reqid, user, start). A row counts while its
// session holds its key, which pg_locks shows to every node; when the
// session ends — release, the process killed, the connection cut —
// PostgreSQL drops the advisory lock at once and the row counts no more
// ([Store.ListLocks] leaves it out, the next Acquire of the pair replaces
// it). [Store.AcquireSession] names the session ("pg:HOLDER:PID", kept in
// the run's owner) so that [Store.SessionAlive], on any node, can tell
// from pg_locks whether the process running a run still holds its locks:
// a run whose node died is marked lost from every node. A node that vanishes without closing its connections (power cut,
// network gone) is noticed by the server's TCP keepalives, which the store
// sets to about a minute for its sessions unless the URL sets them.
// Connections must reach the server in a session of their own: through
// PgBouncer, only in session pooling mode.
//
// Calls take no context: each is bounded — 30 s, of which at most 10 s
// waiting for a lock another node holds (then an error saying so);
// DecidePairRequest 5 min, of which decide at most 2 (then the server ends
// the transaction and nothing is recorded).
//
// # Errors
//
// As the files store: store.ErrNotFound (test with errors.Is) for a
// missing agent, run, pairing request or rotation; *store.PendingExistsError
// and *store.QueueFullError when a pairing request is refused;
// *store.DecidedError when a request was already decided;
// *store.LockConflictError listing every conflicting pair when Acquire
// cannot take them all (nothing is held then); errors of decide returned
// as they are. Other errors name the operation and the database by its
// URL with the password replaced by xxxxx: no error carries a password.
package postgres
