package postgres

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// request is a pending request for host created at t0+offset, valid for
// ten minutes.
func request(host string, offset time.Duration) store.PairRequest {
	return store.PairRequest{Hostname: host, IP: "192.0.2.7", Port: 7443, CSR: "-----BEGIN CERTIFICATE REQUEST-----\n…",
		Nonce: "00112233445566778899aabbccddeeff", Code: "012345",
		Created: t0.Add(offset), Expires: t0.Add(offset + 10*time.Minute)}
}

func approve(cert string) func(store.PairRequest) (store.Decision, error) {
	return func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: store.PairApproved, Cert: cert, CA: "ca-pem"}, nil
	}
}

// transcript records what a store answers, with request ids replaced by
// #1, #2, … in the order they appear, so two stores' answers compare.
type transcript struct {
	ids   map[string]string
	order []string
	lines []string
}

func (tr *transcript) label(reqid string) string {
	if reqid == "" {
		return ""
	}
	if tr.ids == nil {
		tr.ids = make(map[string]string)
	}
	l, ok := tr.ids[reqid]
	if !ok {
		l = fmt.Sprintf("#%d", len(tr.ids)+1)
		tr.ids[reqid] = l
		tr.order = append(tr.order, reqid)
	}
	return l
}

func (tr *transcript) req(r store.PairRequest) string {
	r.ReqID = tr.label(r.ReqID)
	return fmt.Sprintf("%+v", r)
}

func (tr *transcript) err(err error) string {
	if err == nil {
		return "ok"
	}
	msg := err.Error()
	for _, id := range tr.order {
		msg = strings.ReplaceAll(msg, id, tr.ids[id])
	}
	return fmt.Sprintf("%T %s (not found: %v)", err, msg, errors.Is(err, store.ErrNotFound))
}

func (tr *transcript) add(step string, parts ...string) {
	tr.lines = append(tr.lines, step+": "+strings.Join(parts, " | "))
}

// pairScenario takes a queue through additions, refusals, decisions,
// expiry and purges, and returns what it answered.
func pairScenario(t *testing.T, q store.PairingQueue) []string {
	var tr transcript
	ids := map[string]string{} // host → reqid
	add := func(step string, r store.PairRequest, max int) {
		got, err := q.AddPairRequest(r, max)
		if err == nil {
			if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(got.ReqID) {
				t.Errorf("%s: request id %q, want 16 hex digits", step, got.ReqID)
			}
			ids[r.Hostname] = got.ReqID
			tr.add(step, tr.req(got))
			return
		}
		var pe *store.PendingExistsError
		if errors.As(err, &pe) {
			tr.add(step, tr.err(err), "pending "+tr.label(pe.ReqID))
			return
		}
		tr.add(step, tr.err(err))
	}
	get := func(step, reqid string) {
		r, err := q.GetPairRequest(reqid)
		tr.add(step, tr.req(r), tr.err(err))
	}
	list := func(step string, now time.Time) {
		l, err := q.ListPairRequests(now)
		parts := []string{tr.err(err), fmt.Sprintf("nil=%v", l == nil)}
		for _, r := range l {
			parts = append(parts, tr.req(r))
		}
		tr.add(step, parts...)
	}
	decide := func(step, host string, now time.Time, d func(store.PairRequest) (store.Decision, error)) {
		calls := 0
		r, err := q.DecidePairRequest(ids[host], now, func(r store.PairRequest) (store.Decision, error) {
			calls++
			return d(r)
		})
		var de *store.DecidedError
		if errors.As(err, &de) {
			de.ReqID = tr.label(de.ReqID)
			tr.add(step, tr.err(err), fmt.Sprintf("%+v", *de), fmt.Sprint(calls))
			return
		}
		tr.add(step, tr.req(r), tr.err(err), fmt.Sprint(calls))
	}
	expire := func(step string, now time.Time, keep time.Duration) {
		l, err := q.ExpirePairRequests(now, keep)
		parts := []string{tr.err(err), fmt.Sprintf("nil=%v", l == nil)}
		for _, r := range l {
			parts = append(parts, tr.req(r))
		}
		tr.add(step, parts...)
	}

	list("empty", t0)
	expire("expire empty", t0, time.Minute)
	add("add web-02", request("web-02", 2*time.Second), 3)
	add("add web-01", request("web-01", time.Second), 3)
	add("add db-01", request("db-01", 3*time.Second), 3)
	get("get web-01", ids["web-01"])
	list("list", t0.Add(time.Minute))
	list("list after expiry", t0.Add(time.Hour))
	get("get unknown", "ffffffffffffffff")
	get("get bad id", "../agents/web-01")
	add("add WEB-01 again", request("WEB-01", 4*time.Second), 10)
	add("add to a full queue", request("web-03", 5*time.Second), 3)
	add("add bad host", request("../x", 5*time.Second), 10)
	decide("deny web-02", "web-02", t0.Add(6*time.Second), func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: store.PairDenied, Reason: "no", Cert: "ignored"}, nil
	})
	decide("approve web-02 again", "web-02", t0.Add(7*time.Second), approve("x"))
	decide("decide web-01 fails", "web-01", t0.Add(7*time.Second), func(store.PairRequest) (store.Decision, error) {
		return store.Decision{}, errors.New("ca key unreadable")
	})
	decide("decide web-01 maybe", "web-01", t0.Add(7*time.Second), func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: "maybe"}, nil
	})
	get("web-01 still pending", ids["web-01"])
	decide("approve web-01", "web-01", t0.Add(8*time.Second), approve("cert-1"))
	get("web-01 approved", ids["web-01"])
	decide("decide unknown", "nobody", t0, approve("x"))
	add("add web-01 after approval", request("web-01", 9*time.Second), 3)
	// At t0+20m db-01 and the second web-01 have expired: Add denies them.
	add("add web-09 late", request("web-09", 20*time.Minute), 1)
	get("db-01 expired by add", ids["db-01"])
	add("add web-10", request("web-10", 21*time.Minute), 2)
	decide("approve web-10 after expiry", "web-10", t0.Add(32*time.Minute), approve("never"))
	get("web-10 expired by decide", ids["web-10"])
	expire("expire at 31m", t0.Add(31*time.Minute), 11*time.Minute)
	for _, h := range []string{"web-01", "web-02", "db-01", "web-09", "web-10"} {
		get("after expiry "+h, ids[h])
	}
	list("list at 31m", t0.Add(31*time.Minute))
	expire("expire at 2h", t0.Add(2*time.Hour), 11*time.Minute)
	for _, h := range []string{"web-09", "web-10"} {
		get("after purge "+h, ids[h])
	}
	return tr.lines
}

// The queue answers as the files store's does, step by step.
func TestPairQueueLikeFiles(t *testing.T) {
	s, _ := newStore(t)
	want := pairScenario(t, store.NewFiles(t.TempDir()))
	got := pairScenario(t, s)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("pairing queue (-files +postgres):\n%s", d)
	}
}

// Deciders racing on two nodes (two stores, two pools) decide once: one
// certificate is signed, one wins, the others are told it was approved.
func TestPairDecideOnceAcrossStores(t *testing.T) {
	a, url := newStore(t)
	b := openStore(t, url)
	r, err := a.AddPairRequest(request("web-01", 0), 10)
	if err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var (
		issued  atomic.Int64
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]error, racers)
	)
	for i := range racers {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, results[i] = st.DecidePairRequest(r.ReqID, t0.Add(time.Minute), func(store.PairRequest) (store.Decision, error) {
				n := issued.Add(1) // a certificate is signed here
				time.Sleep(20 * time.Millisecond)
				return store.Decision{Status: store.PairApproved, Cert: fmt.Sprintf("cert-%d", n), CA: "ca"}, nil
			})
		}()
	}
	close(start)
	wg.Wait()
	if n := issued.Load(); n != 1 {
		t.Errorf("%d certificates issued for one request, want 1", n)
	}
	won := 0
	for _, err := range results {
		var de *store.DecidedError
		switch {
		case err == nil:
			won++
		case errors.As(err, &de) && de.Status == store.PairApproved:
		default:
			t.Errorf("loser: %v, want *store.DecidedError", err)
		}
	}
	if won != 1 {
		t.Errorf("%d approvals succeeded, want 1", won)
	}
	got, err := b.GetPairRequest(r.ReqID)
	if err != nil || got.Status != store.PairApproved || got.Cert != "cert-1" || !got.Decided.Equal(t0.Add(time.Minute)) {
		t.Errorf("recorded %+v, %v", got, err)
	}
}

// decide may use the store (it writes the registry) even when every
// connection of the pool is taken by other deciders.
func TestPairDecideUsesStore(t *testing.T) {
	url := newDB(t)
	s := openStore(t, url+"&pool_max_conns=1")
	var reqs []store.PairRequest
	for i := range 4 {
		r, err := s.AddPairRequest(request(fmt.Sprintf("web-%02d", i), 0), 10)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.DecidePairRequest(r.ReqID, t0.Add(time.Minute), func(r store.PairRequest) (store.Decision, error) {
				if err := s.PutAgent(store.Agent{Hostname: r.Hostname, IP: r.IP, Port: r.Port}); err != nil {
					return store.Decision{}, err
				}
				return store.Decision{Status: store.PairApproved, Cert: "c", CA: "ca"}, nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("decide %s: %v", reqs[i].Hostname, err)
		}
	}
	names, err := s.AgentNames()
	if err != nil || len(names) != len(reqs) {
		t.Errorf("registered %v, %v", names, err)
	}
}
