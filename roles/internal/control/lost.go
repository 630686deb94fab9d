package control

import (
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// LostError is the error of each host of a lost run that has no stored
// result. Nothing is run again: whether the script ran on the host is not
// known.
func LostError(owner store.RunOwner) string {
	return fmt.Sprintf("lost: the process running this run (%s) ended before this host's result was stored; "+
		"the script may or may not have run there, and is not run again: check the host before retrying", owner)
}

// MarkLost returns run as it is: unchanged unless it is stored as running
// by a process that has certainly ended (see ownerGone), in which case it
// is stored and returned as lost: finished now, the results stored so far
// kept, every other host failed with LostError. A record without an owner
// (written by the Perl dispatcher) is never marked.
func MarkLost(runs store.Runs, run store.Run, now time.Time, log *zap.Logger) (store.Run, error) {
	if run.Status != store.RunRunning || run.Owner == nil || !ownerGone(runs, run, log) {
		return run, nil
	}
	done := make(map[string]store.Result, len(run.Results))
	for _, r := range run.Results {
		done[r.Host] = r
	}
	lost := run
	lost.Status, lost.Finished = store.RunLost, now.UTC()
	lost.Results = make([]store.Result, 0, len(run.Hosts))
	missing := 0
	for _, h := range run.Hosts {
		r, ok := done[h]
		if !ok {
			r = store.Result{Host: h, Exit: -1, RTT: FormatRTT(0), ReqID: run.ReqID, Error: LostError(*run.Owner)}
			missing++
		}
		lost.Results = append(lost.Results, r)
	}
	if err := runs.SaveRun(lost); err != nil {
		return run, fmt.Errorf("mark run %s lost: %w", run.ReqID, err)
	}
	if log != nil {
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionRunLost, zap.String("reqid", run.ReqID), zap.String("script", run.Script),
			zap.String("owner", run.Owner.String()), zap.Int("hosts", len(run.Hosts)), zap.Int("unknown", missing))
	}
	return lost, nil
}

// ownerGone reports whether the process that owns run, a running record,
// has certainly ended. On this host the process table tells
// (store.RunOwner.Gone). On another host only the store can: when the
// owner names the session holding the run's locks and runs can check it
// (store.SessionLocks, the PostgreSQL store), the owner is gone once that
// session no longer holds them. Without evidence — the files store, a run
// that holds no locks, a store that does not answer (logged) — it is not.
func ownerGone(runs store.Runs, run store.Run, log *zap.Logger) bool {
	o := run.Owner
	if o.Local() {
		return o.Gone()
	}
	sl, ok := runs.(store.SessionLocks)
	if !ok || o.Session == "" {
		return false
	}
	alive, err := sl.SessionAlive(o.Session)
	if err != nil {
		if log != nil {
			log.Warn("cannot tell whether the process running a run is alive; it stays running", zap.String("reqid", run.ReqID),
				zap.String("owner", o.String()), zap.Error(err))
		}
		return false
	}
	return !alive
}

// GetRun is runs.GetRun followed by MarkLost: what /status and `dispatcher
// status` show.
func GetRun(runs store.Runs, reqid string, log *zap.Logger) (store.Run, error) {
	run, err := runs.GetRun(reqid)
	if err != nil {
		return run, err
	}
	return MarkLost(runs, run, time.Now(), log)
}

// ReapLost marks lost every stored run whose process has ended, when the
// store can list its running runs, and returns how many it marked. The API
// calls it when it starts, so that no run stays running forever.
func ReapLost(runs store.Runs, log *zap.Logger) (int, error) {
	l, ok := runs.(interface{ RunningRuns() ([]store.Run, error) })
	if !ok {
		return 0, nil
	}
	running, err := l.RunningRuns()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, run := range running {
		after, err := MarkLost(runs, run, time.Now(), log)
		if err != nil {
			return n, err
		}
		if after.Status == store.RunLost {
			n++
		}
	}
	return n, nil
}
