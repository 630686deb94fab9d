// Package install lays the one dispatcher binary down on a host: the binary
// in PREFIX/bin with its role symlinks, the system user and group, the
// configuration skeleton with the modes of SPEC §2, the state directory and
// the service unit (systemd or OpenRC), for the dispatcher, agent or api
// role. It is the logic behind `dispatcher install`.
//
// [NewPlan] looks at the host (or at a staging root, like DESTDIR) and
// returns a [Plan]: an ordered list of [Action]s, each with a one-line
// description and, when the host is already as wanted, the line that says
// so. [Plan.Apply] carries out the pending actions in order; a second run
// finds nothing to do. Configuration files that exist are never rewritten,
// even when they differ from the shipped examples.
//
// Errors: NewPlan fails on bad options and when a needed tool (useradd or
// adduser) is missing; [Plan.NeedRoot] lists the pending actions that need
// root, so that a caller can refuse before changing anything; Apply stops at
// the first failing action and returns its error, naming the action.
package install
