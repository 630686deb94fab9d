// Package store keeps the dispatcher's state: the agent registry, the
// pairing queue, run results, locks and revocations. The files
// implementation uses the layout of SPEC.md §2 under state_dir, compatible
// with the Perl dispatcher. Today it reads the registry's names; the full
// interface, split by concern, arrives with pairing.
package store
