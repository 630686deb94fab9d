// Package store keeps the dispatcher's state: the agent registry, the
// pairing queue, revoked serials, run results and host:script locks. The
// state sits behind small interfaces split by concern — [Registry],
// [PairingQueue], [Revocations], [Runs], [Cancels], [Locks] — so that the
// CLI, the API and the pairing listener depend only on what they use, and
// so that a second implementation (PostgreSQL, SPEC §9) can slot in.
//
// [Files] is the default implementation: the layout of SPEC §2 under
// state_dir, compatible with the Perl dispatcher.
//
//	agents/HOST.json    registry record, 0640 (see [Agent])
//	contact/HOST        empty file, 0640; its modification time is the last
//	                    successful contact with HOST (see [Files.RecordContact])
//	pairing/REQID.json  pairing request and, once decided, its answer, 0640 (see [PairRequest])
//	pairing/queue.lock  flock(2) lock guarding every change of the queue
//	revoked-serials     revoked agent serials, one per line, 0640 (see [Files.RevokeSerial])
//	revoked-serials.lock
//	                    flock(2) lock guarding changes of revoked-serials
//	revoked-dispatcher-serials
//	                    revoked dispatcher certificates, pushed to agents, 0640
//	                    (see [Files.RevokeDispatcherSerial]; and its .lock)
//	rotation.json       the last rotate-cert, the Perl dispatcher's fields, 0640 (see [Rotation])
//	runs/REQID.json     stored run, 0640 (see [Run])
//	runs/REQID.cancel   a request to cancel the run, from another process, 0640:
//	                    {"reqid", "requested"} (see [Files.RequestCancel])
//	locks/HOST--SCRIPT.lock
//	                    flock(2) lock file, 0640, shared with the Perl dispatcher
//
// Directories are created 0750 on first write. Every file is replaced
// atomically (temporary file, fsync, rename), so a reader never sees half a
// record; contact/HOST has no content to tear and is not synced. Names that reach the file system are validated first: host names
// with pki.ValidHostname, request ids with [ValidReqID], so no argument can
// name a path outside state_dir.
//
// # Locks
//
// A lock is flock(LOCK_EX) on locks/HOST--SCRIPT.lock, the file the Perl
// dispatcher uses, so both see each other's runs. flock locks belong to the
// open file, so the kernel drops them when the holder exits for any reason
// (panic, kill -9). Lock files are never removed: removing one while another
// process has it open but not yet locked would let two processes lock two
// different files of the same name. The holder writes who it is (pid, reqid,
// user, start time) into the file while it holds it and empties it on
// release; [Files.ListLocks] probes each file with a non-blocking flock and shows
// held locks only.
//
// # Runs across processes
//
// A run's record names its owner while it runs ([RunOwner]: host, pid,
// start time), so that a run whose process died can be told from one still
// running: on its own host by the process table ([RunOwner.Gone]); from
// another host only through a store whose locks live in sessions every
// process can see ([SessionLocks], the PostgreSQL store: the owner's
// Session). Another process asks the owner to cancel a run through
// [Cancels]: the owner polls for requests of its runs in flight, and
// [Files.PruneRuns] removes requests older than its cutoff.
//
// # Pairing queue
//
// A request is added pending under a new random id (16 hex digits) and
// decided at most once: [Files.DecidePairRequest] holds the queue lock
// (flock, so it excludes other processes as well as other goroutines)
// while it reads the request, calls the caller's decide function (which
// signs the certificate and writes the registry) and records the answer.
// Two approvals of one request racing in two processes therefore sign one
// certificate; the loser gets a *[DecidedError]. The queue lock also makes
// the checks of [Files.AddPairRequest] (one pending request per host name,
// at most pairing_max_queue pending) hold across listener processes.
// Requests nobody decides before their expiry are denied "expired";
// answers are purged pairing_timeout after the decision
// ([Files.ExpirePairRequests]).
//
// # Revocations
//
// revoked-serials has the format of the agents' file of that name (and of
// the Perl dispatcher's): one serial per line, '#' comments. Each serial
// [Files.RevokeSerial] adds is lowercase hex (0x-prefixed when it has no
// hex letter, so it is never read as decimal) below a comment line
// "# revoked HOST TIME: REASON". It is read with pki.ParseSerialList.
//
// The certificate lifecycle keeps its per-agent fields (last_renewal,
// renewal_unsupported, revocations_pushed, and the Perl dispatcher's
// serial_status, dispatcher_serial, serial_broadcast, serial_confirmed) in
// [Agent.Extra], so that both dispatchers read and write them:
// [Agent.SetExtraString], [Agent.ExtraTime] and the Field constants.
//
// # Errors
//
// [ErrNotFound] (test with errors.Is) for a missing agent, run or pairing
// request; *[PendingExistsError] and *[QueueFullError] when a pairing
// request is refused; *[DecidedError] when a request was already decided;
// *[LockConflictError] listing every conflicting host:script pair when
// [Files.Acquire] cannot take them all (nothing is held then); other errors
// name the file and the operation.
package store
