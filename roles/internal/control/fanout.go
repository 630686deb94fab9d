package control

import (
	"context"
	"sync"
)

// fanout calls work for every index 0..n-1 on at most parallel goroutines
// at once and hands each result to done as it completes. Results travel on
// a channel to the calling goroutine, so done is called in completion
// order, one call at a time, and needs no locking. fanout returns once every
// index has been handed to done. work must return on its own when ctx ends
// (a cancelled host is a result too).
func fanout[R any](ctx context.Context, n, parallel int, work func(ctx context.Context, i int) R, done func(i int, r R)) {
	if parallel < 1 {
		parallel = 1
	}
	if parallel > n {
		parallel = n
	}
	type item struct {
		i int
		r R
	}
	jobs := make(chan int)
	results := make(chan item, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results <- item{i, work(ctx, i)}
			}
		}()
	}
	go func() {
		for i := range n {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	for it := range results {
		done(it.i, it.r)
	}
}

// collect is fanout for the operations that only gather results: it
// returns them in the order of the hosts, whether ok held for every one,
// and passes each to onResult (when set) in completion order.
func collect[R any](ctx context.Context, n, parallel int, work func(ctx context.Context, i int) R, ok func(R) bool, onResult func(int, R)) ([]R, bool) {
	results, all := make([]R, n), true
	fanout(ctx, n, parallel, work, func(i int, r R) {
		results[i] = r
		if !ok(r) {
			all = false
		}
		if onResult != nil {
			onResult(i, r)
		}
	})
	return results, all
}
