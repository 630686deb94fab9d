package control

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
