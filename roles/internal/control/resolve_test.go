package control

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Concurrent requests for one name share one lookup, and the answer is
// reused: a busy API must not flood the resolver.
func TestResolveSharesLookups(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	e := &Engine{o: Options{ConnectTimeout: time.Second, Resolve: func(ctx context.Context, name string) error {
		calls.Add(1)
		<-release
		return errors.New("does not resolve")
	}}}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.resolve(context.Background(), "Web-01")
		}()
	}
	// Let the goroutines queue up behind the first lookup, then answer it.
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("a waiter saw success for a name that does not resolve")
		}
	}
	if err := e.resolve(context.Background(), "web-01"); err == nil {
		t.Fatal("cached answer lost")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d lookups for one name, want 1", n)
	}
	if err := e.resolve(context.Background(), "web-02"); err == nil || calls.Load() != 2 {
		t.Errorf("another name: err=%v, lookups=%d; want its own lookup", err, calls.Load())
	}
}

// resolve = "registry": a registered agent with an address is dialled
// there without a lookup; a name the registry has no address for is still
// looked up. With the default, a name that resolves is dialled by name.
func TestPlanPreferRegistry(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	if err := st.PutAgent(store.Agent{Hostname: "web-01", IP: "127.0.0.9", Port: 7000}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefer  bool
		host    string
		addr    string
		lookups int32
	}{
		{prefer: true, host: "web-01", addr: "127.0.0.9:7000", lookups: 0},
		{prefer: true, host: "web-02", addr: "web-02:7443", lookups: 1},
		{prefer: false, host: "web-01", addr: "web-01:7000", lookups: 1},
	} {
		var calls atomic.Int32
		e := &Engine{o: Options{ConnectTimeout: time.Second, Registry: st, PreferRegistry: tc.prefer,
			Resolve: func(context.Context, string) error { calls.Add(1); return nil }}}
		p, err := e.plan(context.Background(), Target{Arg: tc.host, Name: tc.host}, 0)
		if err != nil {
			t.Fatalf("prefer=%v %s: %v", tc.prefer, tc.host, err)
		}
		if p.target.Addr != tc.addr || calls.Load() != tc.lookups {
			t.Errorf("prefer=%v %s: dial %s after %d lookups, want %s after %d", tc.prefer, tc.host, p.target.Addr, calls.Load(), tc.addr, tc.lookups)
		}
	}
}
