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
// by a process that has certainly ended (store.RunOwner.Gone), in which
// case it is stored and returned as lost: finished now, the results stored
// so far kept, every other host failed with LostError. A record without an
// owner (written by the Perl dispatcher) is never marked.
func MarkLost(runs store.Runs, run store.Run, now time.Time, log *zap.Logger) (store.Run, error) {
	if run.Status != store.RunRunning || run.Owner == nil || !run.Owner.Gone() {
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
