package store

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPlantedSymlinks: a symbolic link planted where a record lives (to a
// file the attacker wants read or overwritten) is neither followed nor
// replaced, reads and writes say why, and the target is untouched.
func TestPlantedSymlinks(t *testing.T) {
	dir := t.TempDir()
	st := NewFiles(filepath.Join(dir, "state"))
	if err := st.PutAgent(Agent{Hostname: "web-01", IP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	const victimText = "root:x:0:0::/root:/bin/sh\n"
	if err := os.WriteFile(victim, []byte(victimText), 0o644); err != nil {
		t.Fatal(err)
	}
	plant := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, path); err != nil {
			t.Fatal(err)
		}
	}
	plant(filepath.Join(st.Dir(), "agents", "web-02.json"))
	plant(filepath.Join(st.Dir(), "runs", "r-planted.json"))
	plant(filepath.Join(st.Dir(), "pairing", "p-planted.json"))

	for name, err := range map[string]error{
		"read agent":           func() error { _, err := st.GetAgent("web-02"); return err }(),
		"write agent":          st.PutAgent(Agent{Hostname: "web-02", IP: "10.6.6.6"}),
		"read run":             func() error { _, err := st.GetRun("r-planted"); return err }(),
		"write run":            st.SaveRun(Run{ReqID: "r-planted", Status: RunDone}),
		"read pairing request": func() error { _, err := st.GetPairRequest("p-planted"); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("%s through a planted link: %v, want a refusal naming the link", name, err)
		}
	}
	if got, _ := os.ReadFile(victim); string(got) != victimText {
		t.Errorf("the link's target changed: %q", got)
	}
	// The planted link is no agent, and the real one is intact.
	agents, err := st.ListAgents()
	if err != nil || len(agents) != 1 || agents[0].Hostname != "web-01" {
		t.Errorf("ListAgents = %+v, %v; want web-01 alone", agents, err)
	}
}

// TestStateDiskFull fills a real, small tmpfs holding the state directory:
// every write fails with an error saying the disk is full, the records
// written before are intact, and writes succeed again once space is freed.
func TestStateDiskFull(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "state")
	if err := os.Mkdir(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", mnt).CombinedOutput(); err != nil {
		// pki's TestWriteFileAtomicDiskFull covers the same with an
		// injected writer wherever mounting is not allowed.
		t.Skipf("cannot mount a tmpfs here (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })

	st := NewFiles(mnt)
	old := Agent{Hostname: "web-01", IP: "10.0.0.1", Port: 7443, Serial: "01"}
	if err := st.PutAgent(old); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveRun(Run{ReqID: "r1", Script: "deploy", Status: RunDone, Hosts: []string{"web-01"}}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	_ = f.Close()

	big := Agent{Hostname: "web-01", IP: "10.0.0.2", Port: 7443, Serial: "02", Expiry: strings.Repeat("x", 8000)}
	for name, err := range map[string]error{
		"replace agent": st.PutAgent(big),
		"new agent":     st.PutAgent(Agent{Hostname: "web-02", Expiry: strings.Repeat("y", 8000)}),
		"store run":     st.SaveRun(Run{ReqID: "r2", Script: strings.Repeat("z", 8000), Status: RunRunning}),
	} {
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "state directory is full") {
			t.Errorf("%s on a full disk: %v, want ENOSPC and what to do", name, err)
		}
	}
	got, err := st.GetAgent("web-01")
	if err != nil || got.Serial != "01" || got.IP != "10.0.0.1" {
		t.Errorf("web-01 after failed writes: %+v, %v", got, err)
	}
	if _, err := st.GetAgent("web-02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("web-02 after a failed write: %v, want not found", err)
	}
	if r, err := st.GetRun("r1"); err != nil || r.Status != RunDone {
		t.Errorf("run r1 after failed writes: %+v, %v", r, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(mnt, "*", ".*.tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left on the full disk: %v", leftovers)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAgent(big); err != nil {
		t.Fatalf("write after space was freed: %v", err)
	}
	if _, err := st.ListPairRequests(time.Now()); err != nil {
		t.Fatal(err)
	}
}
