-- 0001: the dispatcher's state (SPEC §9). The records are the JSON the
-- files store writes (text, so that every byte round-trips); the other
-- columns are what queries select on.

-- The agent registry: agents/HOST.json. last_contact is RecordContact's
-- (contact/HOST of the files store), kept beside the record so that a
-- fan-out does not rewrite ten thousand records.
CREATE TABLE agents (
	hostname     text PRIMARY KEY,
	record       text NOT NULL,
	last_contact timestamptz
);

-- Stored runs: runs/REQID.json. updated is the last SaveRun, by the
-- writing node's clock (PruneRuns).
CREATE TABLE runs (
	reqid   text PRIMARY KEY,
	status  text NOT NULL,
	updated timestamptz NOT NULL,
	record  text NOT NULL
);
CREATE INDEX runs_updated ON runs (updated);
CREATE INDEX runs_running ON runs (reqid) WHERE status = 'running';

-- The pairing queue: pairing/REQID.json, pending until decided, kept
-- after the decision until ExpirePairRequests purges it.
CREATE TABLE pair_requests (
	reqid    text PRIMARY KEY,
	hostname text NOT NULL,
	status   text NOT NULL,
	created  timestamptz NOT NULL,
	expires  timestamptz NOT NULL,
	decided  timestamptz,
	record   text NOT NULL
);
CREATE INDEX pair_requests_status ON pair_requests (status, decided);

-- Revoked certificate serials: revoked-serials (kind agent) and
-- revoked-dispatcher-serials (kind dispatcher). serial is written as the
-- files store writes it (lowercase hex, 0x-prefixed when it has no hex
-- letter), so one value has one spelling; id keeps the order of
-- revocation.
CREATE TABLE revocations (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind   text NOT NULL CHECK (kind IN ('agent', 'dispatcher')),
	serial text NOT NULL,
	host   text NOT NULL,
	reason text NOT NULL,
	at     timestamptz NOT NULL,
	UNIQUE (kind, serial)
);

-- The last rotation of the dispatcher's certificate: rotation.json.
CREATE TABLE rotation (
	id      integer PRIMARY KEY CHECK (id = 1),
	record  text NOT NULL,
	updated timestamptz NOT NULL
);

-- Held host:script locks. A row is a lock while the session that wrote
-- it (backend_pid) holds the session advisory lock holder (a random
-- 63-bit key): see pg_locks. The session ends, for any reason, and the
-- row is stale: Acquire replaces it, ListLocks leaves it out. started is
-- the holder's start time as the files store's lock file has it (RFC 3339
-- with nanoseconds and the holder's offset).
CREATE TABLE lock_holders (
	host        text NOT NULL,
	script      text NOT NULL,
	holder      bigint NOT NULL,
	backend_pid integer NOT NULL,
	node        text NOT NULL,
	pid         integer NOT NULL,
	reqid       text NOT NULL,
	username    text NOT NULL,
	started     text NOT NULL,
	acquired    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (host, script)
);
CREATE INDEX lock_holders_holder ON lock_holders (holder);
