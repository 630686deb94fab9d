package store

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// RecordContact notes a successful contact with host at at. The files store
// keeps it as the modification time of the empty file contact/HOST rather
// than in the registry record: a fan-out to ten thousand agents would
// otherwise rewrite (and fsync) ten thousand records. Nothing is synced —
// a contact time lost to a crash is harmless — and the registry record,
// which the Perl dispatcher shares, is left as it is. GetAgent and
// ListAgents report the later of this time and the record's last_contact.
func (f *Files) RecordContact(host string, at time.Time) error {
	path, err := f.contactPath(host)
	if err != nil {
		return err
	}
	c, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|oNoFollow, ModeRecord)
	if os.IsNotExist(err) {
		if err = os.MkdirAll(filepath.Dir(path), ModeDir); err == nil {
			c, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|oNoFollow, ModeRecord)
		}
	}
	if err != nil {
		return fmt.Errorf("record contact with %s: %w", host, err)
	}
	c.Close()
	if err := os.Chtimes(path, at, at); err != nil {
		return fmt.Errorf("record contact with %s: %w", host, err)
	}
	return nil
}

func (f *Files) contactPath(host string) (string, error) {
	if err := pki.ValidHostname(host); err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	return filepath.Join(f.dir, "contact", host), nil
}

// withContact sets a.LastContact from contact/HOST when that is later.
func (f *Files) withContact(a Agent) Agent {
	path, err := f.contactPath(a.Hostname)
	if err != nil {
		return a
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return a
	}
	if t := fi.ModTime().UTC().Truncate(time.Second); t.After(a.LastContact) {
		a.LastContact = t
	}
	return a
}
