package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Revocation is one entry of revoked-serials: the serial and, when the
// comment line written with it says so, the host, the time and the reason.
// Entries written by hand or by the Perl dispatcher have only the serial.
type Revocation struct {
	Serial string // as written in the file
	Host   string
	At     time.Time
	Reason string
}

// revokedFile is the revocation list under the state directory.
const revokedFile = "revoked-serials"

// revocationTag starts the comment line RevokeSerial writes before each
// serial: "# revoked HOST TIME: REASON".
const revocationTag = "# revoked "

func (f *Files) revokedPath() string { return filepath.Join(f.dir, revokedFile) }

// RevokeSerial adds serial to revoked-serials with a comment line naming
// host, the time and reason. The serial is written as lowercase hex, with
// a 0x prefix when it has no hex letter so that no reader takes it for a
// decimal number. A serial already listed is left as it is. The file is
// rewritten atomically under a lock, so concurrent revocations are all
// kept.
func (f *Files) RevokeSerial(serial *big.Int, host, reason string, at time.Time) error {
	return f.revokeIn(f.revokedPath(), serial, host, reason, at)
}

// revokeIn adds serial to the serial list at path, as RevokeSerial does.
func (f *Files) revokeIn(path string, serial *big.Int, host, reason string, at time.Time) error {
	if serial == nil || serial.Sign() <= 0 {
		return errors.New("revoke: no serial number")
	}
	return withStateLock(path+".lock", func() error {
		data, err := readRecord(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if set, _ := pki.ParseSerialList(data); set.Contains(serial) {
			return nil
		}
		var b bytes.Buffer
		b.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s%s %s: %s\n", revocationTag, OneLine(host), at.UTC().Format(time.RFC3339), OneLine(reason))
		b.WriteString(RevokedSerialText(serial))
		b.WriteByte('\n')
		if err := os.MkdirAll(f.dir, ModeDir); err != nil {
			return fmt.Errorf("create %s: %w", f.dir, err)
		}
		return pki.WriteFileAtomic(path, b.Bytes(), ModeRecord)
	})
}

// RevokedSerials reads revoked-serials with pki.ParseSerialList, so the
// Perl dispatcher's forms load too (an all-digit line revokes both its hex
// and its decimal reading). A missing file is an empty set. Lines that do
// not parse are skipped; they are returned as warnings, "FILE line N: …".
func (f *Files) RevokedSerials() (pki.SerialSet, []error, error) {
	return readSerialList(f.revokedPath())
}

// readSerialList reads the serial list at path as RevokedSerials does.
func readSerialList(path string) (pki.SerialSet, []error, error) {
	data, err := readRecord(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pki.SerialSet{}, nil, nil
	}
	if err != nil {
		return pki.SerialSet{}, nil, fmt.Errorf("read %s: %w", path, err)
	}
	set, errs := pki.ParseSerialList(data)
	for i, e := range errs {
		errs[i] = fmt.Errorf("%s %w", path, e)
	}
	return set, errs, nil
}

// ListRevocations returns the entries of revoked-serials in file order.
// A serial line takes host, time and reason from a "# revoked" comment
// line directly above it.
func (f *Files) ListRevocations() ([]Revocation, error) {
	return listRevocationsIn(f.revokedPath())
}

// parseRevocationNote reads "HOST TIME: REASON".
func parseRevocationNote(s string) Revocation {
	var r Revocation
	head, reason, _ := strings.Cut(s, ": ")
	r.Reason = reason
	host, at, _ := strings.Cut(head, " ")
	r.Host = host
	if t, err := time.Parse(time.RFC3339, strings.TrimSpace(at)); err == nil {
		r.At = t
	}
	return r
}

// RevokedSerialText is n as a revocation list holds it, in both stores:
// lowercase hex, prefixed 0x when every digit is a decimal one
// (pki.ParseSerial would read such a line both ways).
func RevokedSerialText(n *big.Int) string {
	s := pki.FormatSerial(n)
	if strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'f' }) < 0 {
		return "0x" + s
	}
	return s
}

// OneLine is s with its control characters as spaces: how both stores keep
// a revocation's host and reason, which the files store writes on one
// comment line.
func OneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
