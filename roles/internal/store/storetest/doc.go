// Package storetest is the conformance suite of [store.Store]: the
// behaviour every implementation of the dispatcher's state — the files store
// and the PostgreSQL store — must show, asserted as a caller sees it through
// the interface, so that the CLI, the API and the pairing listener behave
// the same on either.
//
// [Run] runs the suite as subtests of t. Each subtest calls open once for a
// new, empty state and gets two handles on it, a and b: what two processes
// sharing that state see (files: two store.NewFiles on one t.TempDir();
// PostgreSQL: two Opens of one new database, so two connection pools).
// Most subtests use a alone; those about state shared between dispatcher
// nodes write through one handle and read, decide or lock through the other:
// a host:script lock taken through a conflicts for b, two deciders of one
// pairing request racing through a and b call decide once. open must return
// two distinct values, and closes them (t.Cleanup) when they hold anything.
//
// What the suite covers, by subtest: Registry (put, get, replace, delete,
// sorted lists, host name checks, Extra and lifecycle fields), Contact
// (RecordContact against a record's last_contact), Runs (save, replace,
// RunningRuns, PruneRuns, request id checks), Cancels (a cancel requested
// through one handle seen through the other, through rewrites of the
// running record, gone with its run), Pairing (add, one pending
// request per host, queue limit, expiry, listing, deciding exactly once,
// purging answers), Revocations (agent and dispatcher lists), Rotation,
// Locks (all or none, conflicts across handles, ListLocks, release) and
// SharedState (every concern written through a is seen through b).
// What only one implementation can check — the files store's layout,
// modes, symbolic links and Perl compatibility, the PostgreSQL store's
// migrations — stays in that implementation's own tests.
//
// How it compares: times as instants (the zone is ignored) and only whole
// seconds, which every store keeps; a nil and an empty slice or map are
// equal; [store.Agent.Extra] values are compared as JSON values whose
// numbers keep their spelling (key order and white space are ignored);
// [store.LockInfo.Path] is ignored. "Sorted" means the byte order of
// sort.Strings, not a database collation. PruneRuns is given cutoffs an
// hour before and after the writes only, since it goes by the time of the
// last write.
//
// Failures are reported through t (Errorf, or Fatalf when the rest of a
// subtest cannot go on); nothing is returned.
package storetest
