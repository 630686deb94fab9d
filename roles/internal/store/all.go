package store

import "time"

// Store is the whole of the dispatcher's state as one value: what both
// implementations provide — Files (state_dir) and the PostgreSQL store
// (roles/internal/store/postgres) — and what the roles open with
// roles/internal/store/backend. Code that needs one concern takes that
// concern's interface, not Store.
type Store interface {
	Registry
	PairingQueue
	Revocations
	DispatcherRevocations
	Rotations
	Runs
	Cancels
	Locks

	// RecordContact notes a successful contact with host at at; GetAgent
	// and ListAgents report the later of it and the record's last_contact.
	RecordContact(host string, at time.Time) error
	// AgentNames returns the names of the registered agents, sorted.
	AgentNames() ([]string, error)
	// PruneRuns removes the runs stored before cutoff (by their last
	// write) and returns how many.
	PruneRuns(cutoff time.Time) (int, error)
	// RunningRuns returns the stored runs whose status is running.
	RunningRuns() ([]Run, error)
	// Close releases what the store holds open (connections); the store
	// is not used afterwards.
	Close() error
}

var _ Store = (*Files)(nil)

// Close does nothing: the files store holds nothing open between calls.
func (f *Files) Close() error { return nil }
