-- 0002: requests to cancel a run (RequestCancel), written by any node and
-- read by the node running the run, which asks for those of its runs in
-- flight about twice a second. A request goes with its run (PruneRuns
-- deletes the run, the request follows); one for a run that is not
-- stored is refused.
CREATE TABLE run_cancels (
	reqid     text PRIMARY KEY REFERENCES runs (reqid) ON DELETE CASCADE,
	requested timestamptz NOT NULL
);
