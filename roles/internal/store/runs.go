package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func (f *Files) runPath(reqid string) (string, error) {
	if err := ValidReqID(reqid); err != nil {
		return "", err
	}
	return filepath.Join(f.dir, "runs", reqid+".json"), nil
}

// SaveRun creates or replaces the record of r.ReqID, atomically.
func (f *Files) SaveRun(r Run) error {
	path, err := f.runPath(r.ReqID)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ReqID, err)
	}
	return writeRecord(path, append(data, '\n'))
}

// GetRun returns the stored run reqid. A run that is not stored (never, or no
// longer) gives an error wrapping ErrNotFound.
func (f *Files) GetRun(reqid string) (Run, error) {
	path, err := f.runPath(reqid)
	if err != nil {
		return Run{}, err
	}
	data, err := readRecord(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Run{}, fmt.Errorf("run %s: %w (runs are kept for run_retention)", reqid, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", path, err)
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", path, err)
	}
	return r, nil
}

// PruneRuns removes stored runs last written before cutoff and returns how
// many it removed, and the cancel requests (REQID.cancel) written before
// cutoff. A missing runs directory holds nothing to prune.
func (f *Files) PruneRuns(cutoff time.Time) (int, error) {
	dir := filepath.Join(f.dir, "runs")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		id, isRun := strings.CutSuffix(name, ".json")
		if !isRun {
			id, _ = strings.CutSuffix(name, cancelSuffix)
		}
		if !e.Type().IsRegular() || id == name || ValidReqID(id) != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err == nil {
			if isRun {
				n++
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("prune runs: %w", err)
		}
	}
	return n, nil
}

// RunningRuns returns the stored runs whose status is running, in no
// particular order. Records that cannot be read are skipped: GetRun
// reports them when asked.
func (f *Files) RunningRuns() ([]Run, error) {
	dir := filepath.Join(f.dir, "runs")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []Run
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || ValidReqID(id) != nil {
			continue
		}
		r, err := f.GetRun(id)
		if err == nil && r.Status == RunRunning {
			out = append(out, r)
		}
	}
	return out, nil
}
