package store

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Lifecycle fields live in Extra: they survive a write and a read, next
// to the Perl dispatcher's fields, and an empty value removes them.
func TestAgentLifecycleFields(t *testing.T) {
	f := NewFiles(t.TempDir())
	at := time.Date(2026, 6, 1, 12, 0, 0, 500, time.UTC)
	a := Agent{Hostname: "web-01"}
	a.SetExtraTime(FieldLastRenewal, at)
	a.SetExtraString(FieldSerialStatus, SerialPending)
	a.SetExtraString(FieldDispatcherSerial, "0b0670")
	if err := f.PutAgent(a); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(f.Dir(), "agents", "web-01.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"last_renewal": "2026-06-01T12:00:00Z"`, `"serial_status": "pending"`, `"dispatcher_serial": "0b0670"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("record lacks %s:\n%s", want, data)
		}
	}
	got, err := f.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExtraTime(FieldLastRenewal).Equal(at.Truncate(time.Second)) || got.ExtraString(FieldSerialStatus) != SerialPending {
		t.Errorf("read back: %+v", got.Extra)
	}
	got.SetExtraString(FieldSerialStatus, "")
	got.SetExtraTime(FieldLastRenewal, time.Time{})
	if len(got.Extra) != 1 || !got.ExtraTime(FieldRenewalUnsupported).IsZero() {
		t.Errorf("after removing two fields: %+v", got.Extra)
	}
}

func TestDispatcherRevocationList(t *testing.T) {
	f := NewFiles(t.TempDir())
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, n := range []int64{0x1f2e, 0x1234, 0x1f2e} {
		if err := f.RevokeDispatcherSerial(big.NewInt(n), "retired node", at); err != nil {
			t.Fatal(err)
		}
	}
	set, warnings, err := f.RevokedDispatcherSerials()
	if err != nil || len(warnings) != 0 || set.Len() != 2 || !set.Contains(big.NewInt(0x1234)) {
		t.Errorf("list: %v %v %v", set.Values(), warnings, err)
	}
	data, _ := os.ReadFile(filepath.Join(f.Dir(), "revoked-dispatcher-serials"))
	want := "# revoked dispatcher 2026-06-01T12:00:00Z: retired node\n1f2e\n# revoked dispatcher 2026-06-01T12:00:00Z: retired node\n0x1234\n"
	if string(data) != want {
		t.Errorf("file:\n%s\nwant:\n%s", data, want)
	}
	// The agents' list is another file.
	if agents, _, _ := f.RevokedSerials(); agents.Len() != 0 {
		t.Errorf("revoked-serials got %v", agents.Values())
	}
}

func TestRotationState(t *testing.T) {
	f := NewFiles(t.TempDir())
	if _, err := f.GetRotation(); !errors.Is(err, ErrNotFound) {
		t.Errorf("no rotation: %v, want ErrNotFound", err)
	}
	// The Perl dispatcher's file, with previous_serial empty (no
	// certificate before).
	path := filepath.Join(f.Dir(), "rotation.json")
	if err := os.WriteFile(path, []byte(`{"current_serial":"abcd1234","previous_serial":"","rotated_at":"2025-01-01T00:00:00Z","overlap_expires":"2025-01-31T00:00:00Z","overlap_days":30}`), 0o640); err != nil {
		t.Fatal(err)
	}
	r, err := f.GetRotation()
	if err != nil || r.CurrentSerial != "abcd1234" || r.PreviousSerial != "" || r.OverlapDays != 30 ||
		!r.OverlapExpires.Equal(time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Perl rotation.json: %+v %v", r, err)
	}
	if err := os.WriteFile(path, []byte(`{"rotated_at":"yesterday"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := f.GetRotation(); err == nil || !strings.Contains(err.Error(), `"rotated_at"`) {
		t.Errorf("bad time: %v", err)
	}
}

// FuzzRotationJSON: rotation.json may have been written by hand or by the
// Perl dispatcher; reading it never panics, and what reads also writes and
// reads back the same.
func FuzzRotationJSON(f *testing.F) {
	f.Add([]byte(`{"current_serial":"deadbeef","previous_serial":"cafebabe","rotated_at":"2025-06-01T12:00:00Z","overlap_expires":"2025-07-01T12:00:00Z","overlap_days":30}`))
	f.Add([]byte(`{"previous_serial":"oldhex","rotated_at":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"rotated_at":"2025-01-01T00:00:00+02:00"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Rotation
		if r.UnmarshalJSON(data) != nil {
			return
		}
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Rotation
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if back.CurrentSerial != r.CurrentSerial || !back.RotatedAt.Equal(r.RotatedAt.Truncate(time.Second)) {
			t.Fatalf("round trip %+v → %s → %+v", r, b, back)
		}
	})
}
