package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"path/filepath"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Registry fields of the certificate lifecycle. They live in Agent.Extra,
// next to the Perl dispatcher's fields of the same kind, so that a record
// read and written by either dispatcher keeps them all. Times are RFC 3339
// in UTC, as the Perl dispatcher writes them.
const (
	// FieldLastRenewal: when the agent's certificate was last renewed.
	FieldLastRenewal = "last_renewal"
	// FieldRenewalUnsupported: when the agent answered 404 to /renew (a
	// Perl agent): renewal and pushes are not tried again for a day.
	FieldRenewalUnsupported = "renewal_unsupported"
	// FieldRevocationsPushed: the digest of the dispatcher revocation list
	// the agent last accepted.
	FieldRevocationsPushed = "revocations_pushed"

	// The Perl dispatcher's rotation fields.
	FieldSerialStatus     = "serial_status"     // SerialCurrent, SerialPending or SerialStale
	FieldDispatcherSerial = "dispatcher_serial" // the dispatcher serial the agent confirmed (hex)
	FieldSerialBroadcast  = "serial_broadcast"  // when the agent was marked pending (the rotation)
	FieldSerialConfirmed  = "serial_confirmed"  // when the agent confirmed the new serial
)

// Values of serial_status (the Perl dispatcher's).
const (
	SerialCurrent = "current" // the agent knows the current dispatcher serial
	SerialPending = "pending" // rotated; the new serial is pushed at the next contact
	SerialStale   = "stale"   // still pending after the overlap window
)

// SetExtraString sets the extra field key to the string v; "" removes it.
func (a *Agent) SetExtraString(key, v string) {
	if v == "" {
		delete(a.Extra, key)
		return
	}
	b, _ := json.Marshal(v)
	if a.Extra == nil {
		a.Extra = make(map[string]json.RawMessage)
	}
	a.Extra[key] = b
}

// ExtraTime returns the extra field key read as an RFC 3339 time, or the
// zero time when it is absent or not one.
func (a Agent) ExtraTime(key string) time.Time {
	t, err := time.Parse(time.RFC3339, a.ExtraString(key))
	if err != nil {
		return time.Time{}
	}
	return t
}

// SetExtraTime sets the extra field key to t in RFC 3339, UTC, whole
// seconds; the zero time removes it.
func (a *Agent) SetExtraTime(key string, t time.Time) {
	if t.IsZero() {
		a.SetExtraString(key, "")
		return
	}
	a.SetExtraString(key, t.UTC().Truncate(time.Second).Format(time.RFC3339))
}

// DispatcherRevocations is the list of revoked dispatcher certificate
// serials that the dispatcher pushes to agents, so that they refuse those
// certificates (a retired HA node's, the one replaced by rotate-cert).
type DispatcherRevocations interface {
	// RevokeDispatcherSerial adds serial, noting reason and time.
	RevokeDispatcherSerial(serial *big.Int, reason string, at time.Time) error
	// RevokedDispatcherSerials returns the list, and the lines that did
	// not parse as warnings.
	RevokedDispatcherSerials() (pki.SerialSet, []error, error)
}

// Rotations keeps the state of the last rotation of the dispatcher's own
// certificate.
type Rotations interface {
	// GetRotation returns the last rotation, or an error wrapping
	// ErrNotFound when there was none.
	GetRotation() (Rotation, error)
	// PutRotation records r as the last rotation.
	PutRotation(r Rotation) error
}

var (
	_ DispatcherRevocations = (*Files)(nil)
	_ Rotations             = (*Files)(nil)
)

// revokedDispatcherFile is the dispatcher revocation list under the state
// directory, in the format of revoked-serials.
const revokedDispatcherFile = "revoked-dispatcher-serials"

func (f *Files) revokedDispatcherPath() string { return filepath.Join(f.dir, revokedDispatcherFile) }

// RevokeDispatcherSerial adds serial to revoked-dispatcher-serials below a
// comment line "# revoked dispatcher TIME: REASON", as RevokeSerial does for
// revoked-serials.
func (f *Files) RevokeDispatcherSerial(serial *big.Int, reason string, at time.Time) error {
	return f.revokeIn(f.revokedDispatcherPath(), serial, "dispatcher", reason, at)
}

// RevokedDispatcherSerials reads revoked-dispatcher-serials; a missing file
// is an empty list.
func (f *Files) RevokedDispatcherSerials() (pki.SerialSet, []error, error) {
	return readSerialList(f.revokedDispatcherPath())
}

// Rotation is rotation.json, the Perl dispatcher's record of the last
// rotate-cert: the serials of the new and the replaced dispatcher
// certificate, when, and until when agents still pending the new serial
// count as pending rather than stale.
type Rotation struct {
	CurrentSerial  string    // current_serial, lowercase hex
	PreviousSerial string    // previous_serial; "" when there was no certificate before
	RotatedAt      time.Time // rotated_at
	OverlapExpires time.Time // overlap_expires
	OverlapDays    int       // overlap_days
}

type rotationJSON struct {
	CurrentSerial  string `json:"current_serial"`
	PreviousSerial string `json:"previous_serial"`
	RotatedAt      string `json:"rotated_at"`
	OverlapExpires string `json:"overlap_expires"`
	OverlapDays    int    `json:"overlap_days"`
}

// MarshalJSON writes the Perl dispatcher's fields, times in RFC 3339 UTC.
func (r Rotation) MarshalJSON() ([]byte, error) {
	return json.Marshal(rotationJSON{
		CurrentSerial:  r.CurrentSerial,
		PreviousSerial: r.PreviousSerial,
		RotatedAt:      formatStamp(r.RotatedAt),
		OverlapExpires: formatStamp(r.OverlapExpires),
		OverlapDays:    r.OverlapDays,
	})
}

// UnmarshalJSON reads the Perl dispatcher's fields; a time that does not
// parse is an error naming its field.
func (r *Rotation) UnmarshalJSON(data []byte) error {
	var j rotationJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	out := Rotation{CurrentSerial: j.CurrentSerial, PreviousSerial: j.PreviousSerial, OverlapDays: j.OverlapDays}
	for _, f := range []struct {
		name, text string
		dst        *time.Time
	}{{"rotated_at", j.RotatedAt, &out.RotatedAt}, {"overlap_expires", j.OverlapExpires, &out.OverlapExpires}} {
		if f.text == "" {
			continue
		}
		t, err := parseStamp(f.text)
		if err != nil {
			return fmt.Errorf("field %q: %w", f.name, err)
		}
		*f.dst = t
	}
	*r = out
	return nil
}

// parseStamp reads an RFC 3339 time that formatStamp can write back: one
// whose UTC form is in the years 0 to 9999 (a time zone offset can push an
// edge time out of them, and such a record would not read back).
func parseStamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("time %q is outside the years 0 to 9999 in UTC", s)
	}
	return t, nil
}

func formatStamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// rotationFile is where the files store keeps the rotation state.
const rotationFile = "rotation.json"

// GetRotation reads state_dir/rotation.json.
func (f *Files) GetRotation() (Rotation, error) {
	path := filepath.Join(f.dir, rotationFile)
	data, err := readRecord(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Rotation{}, fmt.Errorf("no rotation recorded: %w", ErrNotFound)
	}
	if err != nil {
		return Rotation{}, fmt.Errorf("read %s: %w", path, err)
	}
	var r Rotation
	if err := json.Unmarshal(data, &r); err != nil {
		return Rotation{}, fmt.Errorf("read %s: %w", path, err)
	}
	return r, nil
}

// PutRotation replaces state_dir/rotation.json atomically (mode 0640).
func (f *Files) PutRotation(r Rotation) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode rotation state: %w", err)
	}
	return writeRecord(filepath.Join(f.dir, rotationFile), append(data, '\n'))
}
