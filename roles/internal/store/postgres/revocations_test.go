package postgres

import (
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// revocationState is what a store says about its revocations.
type revocationState struct {
	Agents, Dispatchers   []string // the sets, as hex
	AgentWarnings, Errors []string
	List                  []store.Revocation
}

func hexes(s pki.SerialSet) []string {
	var out []string
	for _, v := range s.Values() {
		out = append(out, pki.FormatSerial(v))
	}
	return out
}

func revocationsOf(st store.Store) revocationState {
	var rs revocationState
	note := func(err error) {
		if err != nil {
			rs.Errors = append(rs.Errors, err.Error())
		}
	}
	set, warnings, err := st.RevokedSerials()
	note(err)
	rs.Agents = hexes(set)
	for _, w := range warnings {
		rs.AgentWarnings = append(rs.AgentWarnings, w.Error())
	}
	set, warnings, err = st.RevokedDispatcherSerials()
	note(err)
	rs.Dispatchers = hexes(set)
	if len(warnings) > 0 {
		rs.Errors = append(rs.Errors, fmt.Sprint("dispatcher warnings: ", warnings))
	}
	rs.List, err = st.ListRevocations()
	note(err)
	return rs
}

// Revocations read back as from the files store: serials as it writes
// them, notes on one line, times in whole seconds, a repeat ignored.
func TestRevocationsLikeFiles(t *testing.T) {
	s, _ := newStore(t)
	files := store.NewFiles(t.TempDir())
	s1, _ := new(big.Int).SetString("c0ffee00112233445566778899aabbcc", 16)
	at := time.Date(2026, 5, 1, 12, 0, 0, 987654321, time.FixedZone("CEST", 2*3600))
	steps := []func(st store.Store) error{
		func(st store.Store) error { return st.RevokeSerial(s1, "web-01", "unpaired", at) },
		func(st store.Store) error {
			return st.RevokeSerial(big.NewInt(0x1234), "web-02", "replaced by\npairing request 0123\x7f", at.Add(time.Minute))
		},
		func(st store.Store) error { return st.RevokeSerial(s1, "web-01", "again", at.Add(time.Hour)) },
		func(st store.Store) error { return st.RevokeSerial(big.NewInt(0xab), "", "no host", at) },
		func(st store.Store) error { return st.RevokeDispatcherSerial(big.NewInt(0x1f2e), "retired node", at) },
		func(st store.Store) error { return st.RevokeDispatcherSerial(big.NewInt(0x1234), "rotated", at) },
		func(st store.Store) error { return st.RevokeDispatcherSerial(big.NewInt(0x1f2e), "again", at) },
	}
	if d := cmp.Diff(revocationsOf(files), revocationsOf(s)); d != "" {
		t.Errorf("no revocations (-files +postgres):\n%s", d)
	}
	for i, step := range steps {
		if err := step(files); err != nil {
			t.Fatal(err)
		}
		if err := step(s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if d := cmp.Diff(revocationsOf(files), revocationsOf(s)); d != "" {
			t.Errorf("after step %d (-files +postgres):\n%s", i, d)
		}
	}
	got := revocationsOf(s)
	if d := cmp.Diff([]string{"ab", "1234", "c0ffee00112233445566778899aabbcc"}, got.Agents); d != "" {
		t.Errorf("revoked agent serials (-want +got):\n%s", d)
	}
	if len(got.List) != 3 || got.List[1].Serial != "0x1234" || got.List[1].Reason != "replaced by pairing request 0123" {
		t.Errorf("ListRevocations = %+v", got.List)
	}
	for _, bad := range []*big.Int{nil, big.NewInt(0), big.NewInt(-5)} {
		if err := s.RevokeSerial(bad, "x", "y", at); err == nil || err.Error() != "revoke: no serial number" {
			t.Errorf("RevokeSerial(%v) = %v", bad, err)
		}
	}
}

func TestRevocationsConcurrent(t *testing.T) {
	a, url := newStore(t)
	b := openStore(t, url)
	var wg sync.WaitGroup
	for i := range 20 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each serial twice, from both nodes.
			for _, st := range []*Store{st, a} {
				if err := st.RevokeSerial(big.NewInt(int64(0xa00+i)), fmt.Sprintf("web-%02d", i), "test", t0); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	set, _, err := b.RevokedSerials()
	if err != nil || set.Len() != 20 {
		t.Errorf("after 20 concurrent revocations: %d serials, %v", set.Len(), err)
	}
	if list, err := a.ListRevocations(); err != nil || len(list) != 20 {
		t.Errorf("ListRevocations: %d entries, %v", len(list), err)
	}
}

// A serial someone wrote into the table by hand that does not parse is a
// warning, and the others still count.
func TestRevocationsHandEdited(t *testing.T) {
	s, url := newStore(t)
	if err := s.RevokeSerial(big.NewInt(0xab), "web-01", "r", t0); err != nil {
		t.Fatal(err)
	}
	exec(t, sqlConn(t, url), "INSERT INTO revocations (kind, serial, host, reason, at) VALUES ('agent', 'not-a-serial!', '', '', now())")
	set, warnings, err := s.RevokedSerials()
	if err != nil || set.Len() != 1 || len(warnings) != 1 {
		t.Errorf("RevokedSerials = %v, %v, %v; want ab and one warning", hexes(set), warnings, err)
	}
}

func TestRotation(t *testing.T) {
	s, _ := newStore(t)
	files := store.NewFiles(t.TempDir())
	if _, err := s.GetRotation(); !errors.Is(err, store.ErrNotFound) || err.Error() != "no rotation recorded: not found" {
		t.Errorf("no rotation: %v, want ErrNotFound", err)
	}
	for _, r := range []store.Rotation{
		{CurrentSerial: "abcd1234", RotatedAt: time.Date(2025, 1, 1, 0, 0, 0, 500, time.UTC),
			OverlapExpires: time.Date(2025, 1, 31, 0, 0, 0, 0, time.FixedZone("X", 3600)), OverlapDays: 30},
		{CurrentSerial: "0b0670", PreviousSerial: "abcd1234", RotatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if err := s.PutRotation(r); err != nil {
			t.Fatal(err)
		}
		if err := files.PutRotation(r); err != nil {
			t.Fatal(err)
		}
		want, err := files.GetRotation()
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRotation()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("GetRotation (-files +postgres):\n%s", d)
		}
	}
}
