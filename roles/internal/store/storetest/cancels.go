package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// ---- Cancels ----

var cancelTests = []test{
	{"RequestAcrossHandles", testCancelAcrossHandles},
	{"UnknownRun", testCancelUnknownRun},
	{"ReqIDs", testCancelReqIDs},
	{"SurvivesSaveRun", testCancelSurvivesSave},
	{"RunOver", testCancelRunOver},
	{"PrunedWithRun", testCancelPruned},
}

// cancels returns CancelRequests(reqids), failing t on an error.
func cancels(t *testing.T, s store.Store, reqids ...string) []string {
	t.Helper()
	got, err := s.CancelRequests(reqids)
	must(t, fmt.Sprintf("CancelRequests(%q)", reqids), err)
	return got
}

// A cancel requested through one handle is seen through the other (the
// process running the run polls its own handle), in the order asked;
// asking again is not an error.
func testCancelAcrossHandles(t *testing.T, o opener) {
	a, b := o.both(t)
	check(t, "CancelRequests of nothing", []string(nil), cancels(t, b))
	for _, id := range []string{"run-1", "run-2", "run-3"} {
		must(t, "SaveRun", a.SaveRun(runningRun(id)))
	}
	check(t, "CancelRequests before any request", []string(nil), cancels(t, b, "run-1", "run-2", "run-3"))

	must(t, "RequestCancel through b", b.RequestCancel("run-2", t0))
	check(t, "CancelRequests through a", []string{"run-2"}, cancels(t, a, "run-1", "run-2", "run-3", "never-stored"))
	must(t, "RequestCancel again", a.RequestCancel("run-2", t0.Add(time.Second)))
	must(t, "RequestCancel through a", a.RequestCancel("run-3", t0))
	check(t, "CancelRequests in the order asked", []string{"run-3", "run-2"}, cancels(t, b, "run-3", "run-1", "run-2"))
	check(t, "CancelRequests of one", []string{"run-3"}, cancels(t, a, "run-3"))
}

// A cancel of a run that is not stored is ErrNotFound, and nothing is
// recorded for it.
func testCancelUnknownRun(t *testing.T, o opener) {
	s := o.one(t)
	wantNotFound(t, "RequestCancel of an unknown run", s.RequestCancel("ffffffffffffffff", t0))
	must(t, "SaveRun", s.SaveRun(runningRun("0123456789abcdef")))
	wantNotFound(t, "RequestCancel of an unknown run beside a stored one", s.RequestCancel("0123456789abcdee", t0))
	check(t, "CancelRequests", []string(nil), cancels(t, s, "ffffffffffffffff", "0123456789abcdee", "0123456789abcdef"))
}

// Request ids are checked as for runs, by both methods.
func testCancelReqIDs(t *testing.T, o opener) {
	s := o.one(t)
	must(t, "SaveRun", s.SaveRun(runningRun("ok")))
	for _, id := range invalidReqIDs {
		wantRefused(t, fmt.Sprintf("RequestCancel(%q)", id), s.RequestCancel(id, t0))
		_, err := s.CancelRequests([]string{"ok", id})
		wantRefused(t, fmt.Sprintf("CancelRequests(ok, %q)", id), err)
	}
}

// The running record is rewritten while the run goes on (the hosts done so
// far): a request stands through it.
func testCancelSurvivesSave(t *testing.T, o opener) {
	a, b := o.both(t)
	r := runningRun("0123456789abcdef")
	must(t, "SaveRun", a.SaveRun(r))
	must(t, "RequestCancel", b.RequestCancel(r.ReqID, t0))
	r.Results = []store.Result{{Host: "web-01", Exit: 0, Stdout: "ok\n", RTT: "12ms", ReqID: r.ReqID}}
	must(t, "SaveRun of the progress", a.SaveRun(r))
	check(t, "CancelRequests after the record was rewritten", []string{r.ReqID}, cancels(t, a, r.ReqID))
	got, err := b.GetRun(r.ReqID)
	must(t, "GetRun", err)
	check(t, "GetRun: a request does not change the record", r, got)
}

// A request for a run that is over is accepted and changes nothing of it.
func testCancelRunOver(t *testing.T, o opener) {
	s := o.one(t)
	done := runningRun("done")
	done.Status, done.Finished, done.Owner = store.RunDone, t0.Add(time.Minute), nil
	must(t, "SaveRun", s.SaveRun(done))
	must(t, "RequestCancel of a finished run", s.RequestCancel(done.ReqID, t0.Add(2*time.Minute)))
	got, err := s.GetRun(done.ReqID)
	must(t, "GetRun", err)
	check(t, "GetRun of the finished run", done, got)
}

// A request goes when PruneRuns prunes its run (a cutoff an hour ahead),
// not before (an hour ago); the count is of runs only.
func testCancelPruned(t *testing.T, o opener) {
	a, b := o.both(t)
	r := runningRun("0123456789abcdef")
	must(t, "SaveRun", a.SaveRun(r))
	must(t, "RequestCancel", a.RequestCancel(r.ReqID, time.Now()))
	n, err := b.PruneRuns(time.Now().Add(-time.Hour))
	must(t, "PruneRuns(an hour ago)", err)
	if n != 0 {
		t.Errorf("PruneRuns(an hour ago) = %d, want 0", n)
	}
	check(t, "CancelRequests after PruneRuns(an hour ago)", []string{r.ReqID}, cancels(t, a, r.ReqID))
	n, err = b.PruneRuns(time.Now().Add(time.Hour))
	must(t, "PruneRuns(in an hour)", err)
	if n != 1 {
		t.Errorf("PruneRuns(in an hour) = %d, want 1 (the run; its request is not counted)", n)
	}
	check(t, "CancelRequests after PruneRuns(in an hour)", []string(nil), cancels(t, a, r.ReqID))
	// The same id stored again has no request.
	must(t, "SaveRun", a.SaveRun(r))
	check(t, "CancelRequests of a run stored again", []string(nil), cancels(t, b, r.ReqID))
}
