package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// FuzzAgentJSON reads arbitrary agents/HOST.json contents as GetAgent and
// ListAgents do. Garbage is an error that names the file (and is not
// "not registered"). A record that loads has a host name and a port in
// range, writes (as PutAgent writes) to JSON that reads back to the same
// record, fields the Go dispatcher does not know included, and writing it
// again gives the same bytes: a record the Perl dispatcher wrote survives
// any number of rewrites.
func FuzzAgentJSON(f *testing.F) {
	f.Add([]byte(`{"hostname":"web-01","ip":"10.0.0.5","paired":"2025-03-01T10:00:00Z","expiry":"Mar  1 10:00:00 2027 GMT","reqid":"a1b2c3d4"}`))
	f.Add([]byte(`{"port":"7443","tags":{"env":"prod"},"last_contact":"2026-01-02T03:04:05.5+01:00","serial_confirmed":null,"x":[1,2.50,"<&>"]}`))
	f.Add([]byte(`{"port":70000}`))
	f.Add([]byte(`{"hostname":7}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"a":1}{"b":2}`))
	path := filepath.Join(f.TempDir(), "web-01.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := readAgent(path, "web-01")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "read registry record "+path+": ") || errors.Is(err, ErrNotFound) {
				t.Fatalf("refusal %q does not name the file", err)
			}
			return
		}
		if a.Hostname == "" || a.Port < 0 || a.Port > 65535 {
			t.Fatalf("loaded host %q, port %d", a.Hostname, a.Port)
		}
		written, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			t.Fatalf("a record that loads does not write: %v", err)
		}
		var back Agent
		if err := json.Unmarshal(written, &back); err != nil {
			t.Fatalf("the record as written does not read back: %v\n%s", err, written)
		}
		opts := cmp.Options{
			cmpopts.EquateEmpty(),
			cmp.Comparer(func(x, y time.Time) bool { return x.Truncate(time.Second).Equal(y.Truncate(time.Second)) }),
			cmp.Comparer(func(x, y json.RawMessage) bool { return fuzzSameJSON(x, y) }),
		}
		if d := cmp.Diff(a, back, opts); d != "" {
			t.Fatalf("record changed in a write and a read (-read +reread):\n%s", d)
		}
		again, err := json.MarshalIndent(back, "", "  ")
		if err != nil || !bytes.Equal(again, written) {
			t.Fatalf("second write differs (%v):\n%s\n%s", err, written, again)
		}
	})
}

// fuzzSameJSON reports whether two JSON values are the same, numbers
// compared by their text.
func fuzzSameJSON(x, y []byte) bool {
	decode := func(b []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	vx, okx := decode(x)
	vy, oky := decode(y)
	return okx && oky && cmp.Equal(vx, vy)
}

// FuzzRevokedSerials reads arbitrary revoked-serials contents (written by
// hand, by the Perl dispatcher or by this one) and revokes one more serial.
// RevokedSerials and ListRevocations agree: the set is every reading of
// every listed serial that parses, and each listed serial that does not is
// one warning naming the file. Revoking adds the serial and loses none of
// those already revoked, whatever the file held, and ListRevocations shows
// it last with its host and reason.
func FuzzRevokedSerials(f *testing.F) {
	f.Add([]byte("0A1B\n# a comment\n0x0a1c\nserial=0A1D\n2587 (0xa1b)\n12\n"), uint64(0xa1b))
	f.Add([]byte("# revoked web-01 2025-06-01T12:00:00Z: unpaired\n0x12\n"), uint64(17))
	f.Add([]byte("bad line\r\n4f:3e:2d\r\n\r\n0a1b # note"), uint64(1))
	f.Add([]byte("# revoked only a note, no serial"), uint64(1<<63))
	f.Add([]byte{}, uint64(0))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, n uint64) {
		s := NewFiles(dir)
		path := s.revokedPath()
		if err := os.WriteFile(path, data, ModeRecord); err != nil {
			t.Fatal(err)
		}
		set, warnings, err := s.RevokedSerials()
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.ListRevocations()
		if err != nil {
			t.Fatal(err)
		}
		var listed pki.SerialSet
		bad := 0
		for _, r := range list {
			if r.Serial == "" || strings.ContainsAny(r.Serial, "#\n") || r.Serial != strings.TrimSpace(r.Serial) {
				t.Fatalf("listed serial %q", r.Serial)
			}
			ns, err := pki.ParseSerial(r.Serial)
			if err != nil {
				bad++
				continue
			}
			for _, v := range ns {
				listed.Add(v)
			}
		}
		if bad != len(warnings) {
			t.Fatalf("%d listed serials do not parse, %d warnings: %v", bad, len(warnings), warnings)
		}
		for _, w := range warnings {
			if !strings.HasPrefix(w.Error(), path+" line ") {
				t.Fatalf("warning %q does not name the file and line", w)
			}
		}
		if d := cmp.Diff(fuzzHex(listed), fuzzHex(set)); d != "" {
			t.Fatalf("ListRevocations and RevokedSerials disagree (-list +set):\n%s", d)
		}

		serial := new(big.Int).Add(new(big.Int).SetUint64(n), big.NewInt(1))
		if err := s.RevokeSerial(serial, "web-01.example.com", "fuzz\nsecond line", time.Unix(1750000000, 0)); err != nil {
			t.Fatal(err)
		}
		after, _, err := s.RevokedSerials()
		if err != nil {
			t.Fatal(err)
		}
		if !after.Contains(serial) {
			t.Fatalf("serial %x not revoked", serial)
		}
		for _, v := range set.Values() {
			if !after.Contains(v) {
				t.Fatalf("serial %x lost when %x was revoked", v, serial)
			}
		}
		if set.Contains(serial) {
			return
		}
		list, err = s.ListRevocations()
		if err != nil || len(list) == 0 {
			t.Fatalf("%d entries, %v", len(list), err)
		}
		last := list[len(list)-1]
		ns, err := pki.ParseSerial(last.Serial)
		if err != nil || len(ns) != 1 || ns[0].Cmp(serial) != 0 || last.Host != "web-01.example.com" ||
			last.Reason != "fuzz second line" || !last.At.Equal(time.Unix(1750000000, 0)) {
			t.Fatalf("last entry %+v (%v, %v), want serial %x by web-01.example.com", last, ns, err, serial)
		}
	})
}

// fuzzHex lists a set as hex, for comparisons.
func fuzzHex(s pki.SerialSet) []string {
	var out []string
	for _, v := range s.Values() {
		out = append(out, pki.FormatSerial(v))
	}
	return out
}
