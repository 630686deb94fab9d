package hook

import (
	"testing"
)

// BenchmarkCheckAllow is the cost the hook adds to every request when it
// allows at once: encoding, environment, fork and exec of a shell, wait.
func BenchmarkCheckAllow(b *testing.B) {
	r := &Runner{Path: writeHook(b, b.TempDir(), "hook", "exit 0"), Timeout: testTimeout}
	c := testContext()
	b.ReportAllocs()
	for b.Loop() {
		if d := r.Check(b.Context(), c); !d.Allowed() {
			b.Fatalf("hook denied: %v", d)
		}
	}
}
