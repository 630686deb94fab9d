// Package transfer copies the whole of the dispatcher's state from one
// store to another: a files-store state directory (one the Perl dispatcher
// wrote included) into PostgreSQL ("dispatcher store import"), and back
// ("dispatcher store export").
//
// [Copy] reads from a [Reader] and writes to a [Target] (a Reader and a
// [Writer]); the files store (store.Files) and the PostgreSQL store
// (postgres.Store) are both. It copies records as they are stored, not as
// the concern interfaces return them (see store.AgentRecord):
//
//   - registry records byte for byte (the Perl dispatcher's fields and
//     fields of later versions included), with the contact time kept
//     beside each (contact/HOST, agents.last_contact);
//   - pairing requests, pending and decided, under their own request ids
//     with their nonces, codes and answers;
//   - every stored run under its reqid, with the time of its last write,
//     so run_retention counts from when the run was written, not from the
//     copy;
//   - both revocation lists, agent and dispatcher serials, in order, each
//     serial as written (a Perl spelling stays) with its host, time and
//     reason;
//   - the last rotation of the dispatcher's certificate.
//
// Locks are not copied: a host:script lock belongs to the process holding
// it and ends with it. When the source shows locks held, a run is in
// progress, and Copy warns (copy with every dispatcher, API and pairing
// process stopped).
//
// # Order, merging and stopping half-way
//
// The revocation lists are copied first, then the rotation, the registry,
// the pairing queue and the runs: a copy that stops early never leaves an
// agent registered whose revocation was not copied.
//
// Without [Options].Merge, Copy refuses with a *[NotEmptyError] when the
// target holds any record (an agent, a pairing request, a run, a
// revocation or a rotation) and writes nothing: two states are never mixed
// by accident. With Merge, every record replaces the target's record of
// the same key (host name, request id, the rotation) and the target's
// other records stay; a revocation whose serial, as written, the target
// already lists stays as the target has it (revocations are only ever
// added).
//
// Each record is written on its own and atomically (a rename, a row), and
// writing a record again writes the same: Copy is idempotent. If it stops
// half-way (an error, a signal through ctx), the target holds the records
// copied so far and each of them whole; run Copy again with Merge to
// complete it.
//
// # Errors
//
// A registry record or a rotation that does not decode stops the copy
// with an error naming it: an agent must not be left behind unnoticed.
// Pairing requests and runs that do not decode, and revocation lines that
// are not serials, are skipped as their store skips them when reading;
// each is reported through [Options].Warn and counted in [Counts].Skipped.
// Errors of the stores are returned as they are, wrapped with the record
// being copied.
package transfer
