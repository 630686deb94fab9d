package exec

import (
	"context"
	"os"
	osexec "os/exec"
	"testing"
)

// BenchmarkRunTrue measures a whole run of /bin/true through the Runner:
// pipes, process group, context on stdin, output readers, wait and drain.
// Compare with BenchmarkForkExecTrue for the Runner's own overhead.
func BenchmarkRunTrue(b *testing.B) {
	if _, err := os.Stat("/bin/true"); err != nil {
		b.Skip("no /bin/true")
	}
	r := &Runner{}
	req := Request{
		Entry: Entry{Name: "true", Path: "/bin/true"},
		Stdin: []byte(`{"script":"true","args":[],"reqid":"bench","peer_ip":"127.0.0.1","username":"b","token":"","timestamp":0}`),
		Env:   map[string]string{"DISPATCHER_REQID": "bench"},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Run(ctx, req); res.Exit != 0 {
			b.Fatalf("Exit %d, Error %q", res.Exit, res.Error)
		}
	}
}

// BenchmarkForkExecTrue is the floor: plain os/exec of /bin/true.
func BenchmarkForkExecTrue(b *testing.B) {
	if _, err := os.Stat("/bin/true"); err != nil {
		b.Skip("no /bin/true")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := osexec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
