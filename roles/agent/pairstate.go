package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
)

// Names and modes of the files pairing writes. The final three are
// agent.conf's cert, key and ca; the pending material sits beside the key.
const (
	pendingSuffix = ".pending"     // the new key, until the certificate arrives
	csrName       = "agent.csr"    // the request sent
	stateName     = "pairing.json" // what the waiting process needs
	waitLogName   = "pairing.log"  // stderr of a background wait when agent.conf logs to stderr

	modeKey        fs.FileMode = 0o640
	modePendingKey fs.FileMode = 0o600
	modeCert       fs.FileMode = 0o644
	modeCSR        fs.FileMode = 0o644
	modeState      fs.FileMode = 0o600
	modeDir        fs.FileMode = 0o755
)

// pairFiles are the paths pairing reads and writes.
type pairFiles struct {
	Key  string `json:"key"`  // agent.key: written on approval
	Cert string `json:"cert"` // agent.crt: written on approval
	CA   string `json:"ca"`   // ca.crt: written on approval
}

func pairFilesFor(cfg *config.Agent) pairFiles {
	return pairFiles{Key: cfg.Key, Cert: cfg.Cert, CA: cfg.CA}
}

func (f pairFiles) dir() string        { return filepath.Dir(f.Key) }
func (f pairFiles) pendingKey() string { return f.Key + pendingSuffix }
func (f pairFiles) csr() string        { return filepath.Join(f.dir(), csrName) }
func (f pairFiles) state() string      { return filepath.Join(f.dir(), stateName) }
func (f pairFiles) waitLog() string    { return filepath.Join(f.dir(), waitLogName) }

// pairState is pairing.json: a request sent and not yet answered. It holds
// everything the waiting process needs, so that it survives the exit of
// request-pairing --background.
type pairState struct {
	ReqID      string    `json:"reqid"`
	Nonce      string    `json:"nonce"`
	Hostname   string    `json:"hostname"`
	Dispatcher string    `json:"dispatcher"`               // host:port of the pairing listener
	Pin        string    `json:"ca_fingerprint,omitempty"` // --ca-fingerprint, normalised
	Code       string    `json:"code"`
	Leaf       []byte    `json:"dispatcher_leaf"` // DER of the dispatcher certificate the request travelled to
	Sent       time.Time `json:"sent"`
	Deadline   time.Time `json:"deadline"`
	Files      pairFiles `json:"files"`
}

func (st *pairState) write() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pairing state: %w", err)
	}
	return pki.WriteFileAtomic(st.Files.state(), append(b, '\n'), modeState)
}

// readState reads a pairing.json; a missing file is (nil, nil).
func readState(path string) (*pairState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pairing state: %w", err)
	}
	var st pairState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read pairing state %s: %w", path, err)
	}
	if st.ReqID == "" || st.Nonce == "" || st.Dispatcher == "" || st.Files.Key == "" {
		return nil, fmt.Errorf("read pairing state %s: incomplete", path)
	}
	return &st, nil
}

// removePending removes the pending key, the request and the state of an
// unfinished pairing under files. Missing files are fine.
func removePending(files pairFiles) error {
	var errs []error
	for _, p := range []string{files.pendingKey(), files.csr(), files.state()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkWritable makes sure each directory the pairing writes to exists (it
// is created if need be) and takes a new file, by creating and removing a
// probe. It touches no network, so it runs before anything is sent.
func checkWritable(files pairFiles) error {
	seen := map[string]bool{}
	for _, f := range []struct{ what, path string }{{"key", files.Key}, {"cert", files.Cert}, {"ca", files.CA}} {
		dir := filepath.Dir(f.path)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		const fix = "run request-pairing as root (sudo) or as the user the agent runs as, after giving it ownership of the directory (chown)"
		if err := os.MkdirAll(dir, modeDir); err != nil {
			return fmt.Errorf("cannot create %s, the directory of %s %s: %v: %s", dir, f.what, f.path, unwrapPath(err), fix)
		}
		probe, err := os.CreateTemp(dir, ".pairing-probe-*")
		if err != nil {
			return fmt.Errorf("cannot write to %s, the directory of %s %s: %v: %s", dir, f.what, f.path, unwrapPath(err), fix)
		}
		name := probe.Name()
		probe.Close()
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("cannot remove files in %s: %v: %s", dir, unwrapPath(err), fix)
		}
	}
	return nil
}

// unwrapPath drops the operation and path of a *fs.PathError, which the
// messages above already say.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
