// Package store keeps the dispatcher's state: the agent registry, run
// results and host:script locks (the pairing queue and revocations join them
// with their features). The state sits behind small interfaces split by
// concern — [Registry], [Runs], [Locks] — so that the CLI, the API and the
// pairing listener depend only on what they use, and so that a second
// implementation (PostgreSQL, SPEC §9) can slot in.
//
// [Files] is the default implementation: the layout of SPEC §2 under
// state_dir, compatible with the Perl dispatcher.
//
//	agents/HOST.json    registry record, 0640 (see [Agent])
//	runs/REQID.json     stored run, 0640 (see [Run])
//	locks/HOST--SCRIPT.lock
//	                    flock(2) lock file, 0640, shared with the Perl dispatcher
//
// Directories are created 0750 on first write. Every file is replaced
// atomically (temporary file, fsync, rename), so a reader never sees half a
// record. Names that reach the file system are validated first: host names
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
// # Errors
//
// [ErrNotFound] (test with errors.Is) for a missing agent or run;
// *[LockConflictError] listing every conflicting host:script pair when
// [Files.Acquire] cannot take them all (nothing is held then); other errors
// name the file and the operation.
package store
