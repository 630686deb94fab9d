package store

import (
	"os/exec"
	"runtime"
	"testing"
)

func TestRunOwnerGone(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process start times are read from /proc")
	}
	self := CurrentOwner()
	if self.PID <= 0 || self.Node == "" || self.Start == "" {
		t.Fatalf("CurrentOwner() = %+v", self)
	}
	if self.Gone() {
		t.Error("this process is gone")
	}

	// A live child, then the same child after kill -9.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	start, exists := processStart(child.Process.Pid)
	if !exists || start == "" {
		t.Fatalf("processStart(child) = %q, %v", start, exists)
	}
	owner := RunOwner{Node: self.Node, PID: child.Process.Pid, Start: start}
	if owner.Gone() {
		t.Error("a running child is gone")
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if !owner.Gone() {
		t.Error("a killed child is not gone")
	}

	for _, tc := range []struct {
		name  string
		owner RunOwner
		gone  bool
	}{
		{"pid reused by another process", RunOwner{Node: self.Node, PID: self.PID, Start: self.Start + "0"}, true},
		{"another host", RunOwner{Node: self.Node + "-other", PID: child.Process.Pid, Start: start}, false},
		{"no pid", RunOwner{Node: self.Node}, false},
		{"no start recorded, pid alive", RunOwner{Node: self.Node, PID: self.PID}, false},
	} {
		if got := tc.owner.Gone(); got != tc.gone {
			t.Errorf("%s: Gone() = %v, want %v", tc.name, got, tc.gone)
		}
	}
}
