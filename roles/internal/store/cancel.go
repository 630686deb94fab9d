package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Cancels carries a request to cancel a run from any process sharing the
// store (another API node, the API for a CLI run) to the process that runs
// it, which asks for the requests of its runs in flight about twice a
// second and cancels those it finds (roles/internal/control).
type Cancels interface {
	// RequestCancel records that run reqid is to be cancelled, asked for
	// at at. The run must be stored (else an error wrapping ErrNotFound);
	// asking again is not an error. A request for a run that is over
	// changes nothing, and a request goes when its run is pruned.
	RequestCancel(reqid string, at time.Time) error
	// CancelRequests returns those of reqids whose cancel was requested,
	// in the order of reqids; nil when none was.
	CancelRequests(reqids []string) ([]string, error)
}

var _ Cancels = (*Files)(nil)

// cancelRequest is the content of runs/REQID.cancel.
type cancelRequest struct {
	ReqID     string    `json:"reqid"`
	Requested time.Time `json:"requested"`
}

// cancelSuffix names a run's cancel request beside its record.
const cancelSuffix = ".cancel"

func (f *Files) cancelPath(reqid string) (string, error) {
	if err := ValidReqID(reqid); err != nil {
		return "", err
	}
	return filepath.Join(f.dir, "runs", reqid+cancelSuffix), nil
}

// RequestCancel writes runs/REQID.cancel beside the run's record (the
// time it was asked for, as JSON). A request already there is kept as it
// is. PruneRuns removes requests older than its cutoff, as it removes
// records.
func (f *Files) RequestCancel(reqid string, at time.Time) error {
	path, err := f.cancelPath(reqid)
	if err != nil {
		return err
	}
	run, _ := f.runPath(reqid)
	if _, err := os.Lstat(run); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("run %s: %w (runs are kept for run_retention)", reqid, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("request cancel of run %s: %w", reqid, err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	data, err := json.Marshal(cancelRequest{ReqID: reqid, Requested: at.UTC()})
	if err != nil {
		return fmt.Errorf("encode cancel request of run %s: %w", reqid, err)
	}
	if err := writeRecord(path, append(data, '\n')); err != nil {
		return fmt.Errorf("request cancel of run %s: %w", reqid, err)
	}
	return nil
}

// CancelRequests returns those of reqids that have a runs/REQID.cancel
// (a regular file: anything else there was not written by a dispatcher
// and does not count).
func (f *Files) CancelRequests(reqids []string) ([]string, error) {
	var out []string
	for _, id := range reqids {
		path, err := f.cancelPath(id)
		if err != nil {
			return nil, err
		}
		fi, err := os.Lstat(path)
		switch {
		case err == nil:
			if fi.Mode().IsRegular() {
				out = append(out, id)
			}
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("read cancel request %s: %w", path, err)
		}
	}
	return out, nil
}
