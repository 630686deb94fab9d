//go:build unix

package store

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// request is a pending request for host created at t0+offset, valid for
// ten minutes.
func request(host string, offset time.Duration) PairRequest {
	return PairRequest{Hostname: host, IP: "192.0.2.7", Port: 7443, CSR: "-----BEGIN CERTIFICATE REQUEST-----\n…", Nonce: "00112233445566778899aabbccddeeff",
		Code: "012345", Created: t0.Add(offset), Expires: t0.Add(offset + 10*time.Minute)}
}

func mustAdd(t *testing.T, f *Files, r PairRequest, max int) PairRequest {
	t.Helper()
	got, err := f.AddPairRequest(r, max)
	if err != nil {
		t.Fatalf("AddPairRequest(%s): %v", r.Hostname, err)
	}
	return got
}

func approve(cert string) func(PairRequest) (Decision, error) {
	return func(PairRequest) (Decision, error) {
		return Decision{Status: PairApproved, Cert: cert, CA: "ca-pem"}, nil
	}
}

func TestPairQueueAddGetList(t *testing.T) {
	f := NewFiles(t.TempDir())
	if l, err := f.ListPairRequests(t0); err != nil || len(l) != 0 {
		t.Fatalf("empty queue: %v, %v", l, err)
	}
	b := mustAdd(t, f, request("web-02", 2*time.Second), 10)
	a := mustAdd(t, f, request("web-01", time.Second), 10)
	c := mustAdd(t, f, request("db-01", 3*time.Second), 10)
	for _, r := range []PairRequest{a, b, c} {
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(r.ReqID) || r.Status != PairPending {
			t.Errorf("added %+v: want a 16-hex reqid and status pending", r)
		}
	}
	path := filepath.Join(f.Dir(), "pairing", a.ReqID+".json")
	assertMode(t, path, ModeRecord)
	assertMode(t, filepath.Dir(path), ModeDir)

	got, err := f.GetPairRequest(a.ReqID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(a, got); d != "" {
		t.Errorf("GetPairRequest (-added +read):\n%s", d)
	}
	list, err := f.ListPairRequests(t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range list {
		names = append(names, r.Hostname)
	}
	if d := cmp.Diff([]string{"web-01", "web-02", "db-01"}, names); d != "" {
		t.Errorf("ListPairRequests: not oldest first (-want +got):\n%s", d)
	}
	// Expired requests are not pending, even before anything marks them.
	if l, _ := f.ListPairRequests(t0.Add(time.Hour)); len(l) != 0 {
		t.Errorf("expired requests listed: %v", l)
	}
	if _, err := f.GetPairRequest("ffffffffffffffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown reqid: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../agents/web-01", "", "a/b", "queue.lock"} {
		if _, err := f.GetPairRequest(bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("GetPairRequest(%q) = %v, want a request id error", bad, err)
		}
	}
	if _, err := f.AddPairRequest(request("../x", 0), 10); err == nil {
		t.Error("a request for host ../x was queued")
	}
}

func TestPairQueueRefusals(t *testing.T) {
	f := NewFiles(t.TempDir())
	first := mustAdd(t, f, request("web-01", 0), 2)

	// One pending request per host name, whatever the case.
	_, err := f.AddPairRequest(request("WEB-01", time.Second), 2)
	var pe *PendingExistsError
	if !errors.As(err, &pe) || pe.ReqID != first.ReqID || strings.Contains(err.Error(), first.ReqID) {
		t.Errorf("second request for web-01: %v (%+v); want a *PendingExistsError that does not show the reqid", err, pe)
	}

	second := mustAdd(t, f, request("web-02", time.Second), 2)
	_, err = f.AddPairRequest(request("web-03", 2*time.Second), 2)
	var qf *QueueFullError
	if !errors.As(err, &qf) || qf.Pending != 2 {
		t.Fatalf("third request with pairing_max_queue 2: %v, want *QueueFullError", err)
	}
	if want := "queue full: 2 requests pending; approve or deny some, or raise pairing_max_queue"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if l, _ := f.ListPairRequests(t0.Add(3 * time.Second)); len(l) != 2 {
		t.Errorf("a refused request was queued: %d pending", len(l))
	}

	// A decided request frees its place and its host name.
	if _, err := f.DecidePairRequest(first.ReqID, t0.Add(3*time.Second), func(PairRequest) (Decision, error) {
		return Decision{Status: PairDenied, Reason: "no"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, f, request("web-01", 4*time.Second), 2)

	// Once the others expire they count no more; Add marks them denied.
	late := mustAdd(t, f, request("web-09", 20*time.Minute), 2)
	expired, err := f.GetPairRequest(second.ReqID)
	if err != nil || expired.Status != PairDenied || expired.Reason != ReasonExpired {
		t.Errorf("expired request: %+v, %v; want denied, expired", expired, err)
	}
	l, _ := f.ListPairRequests(late.Created)
	if len(l) != 1 || l[0].ReqID != late.ReqID {
		t.Errorf("pending after expiry: %+v", l)
	}
}

func TestPairDecideOnce(t *testing.T) {
	f := NewFiles(t.TempDir())
	r := mustAdd(t, f, request("web-01", 0), 10)
	const racers = 8
	var (
		issued  atomic.Int64
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]error, racers)
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, results[i] = f.DecidePairRequest(r.ReqID, t0.Add(time.Minute), func(PairRequest) (Decision, error) {
				n := issued.Add(1) // a certificate is signed here
				time.Sleep(20 * time.Millisecond)
				return Decision{Status: PairApproved, Cert: fmt.Sprintf("cert-%d", n), CA: "ca"}, nil
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
		var de *DecidedError
		switch {
		case err == nil:
			won++
		case errors.As(err, &de) && de.Status == PairApproved:
		default:
			t.Errorf("loser: %v, want *DecidedError", err)
		}
	}
	if won != 1 {
		t.Errorf("%d approvals succeeded, want 1", won)
	}
	got, _ := f.GetPairRequest(r.ReqID)
	if got.Status != PairApproved || got.Cert != "cert-1" || got.CA != "ca" || !got.Decided.Equal(t0.Add(time.Minute)) {
		t.Errorf("recorded %+v", got)
	}
	// Deciding again is refused and says how it was decided.
	_, err := f.DecidePairRequest(r.ReqID, t0.Add(2*time.Minute), approve("x"))
	if err == nil || !strings.Contains(err.Error(), "already approved") {
		t.Errorf("second decision: %v", err)
	}
}

func TestPairDecideErrorKeepsPending(t *testing.T) {
	f := NewFiles(t.TempDir())
	r := mustAdd(t, f, request("web-01", 0), 10)
	boom := errors.New("ca key unreadable")
	if _, err := f.DecidePairRequest(r.ReqID, t0, func(PairRequest) (Decision, error) { return Decision{}, boom }); !errors.Is(err, boom) {
		t.Errorf("decide error: %v", err)
	}
	if got, _ := f.GetPairRequest(r.ReqID); got.Status != PairPending {
		t.Errorf("after a failed decision: %s, want pending", got.Status)
	}
	if _, err := f.DecidePairRequest(r.ReqID, t0, func(PairRequest) (Decision, error) { return Decision{Status: "maybe"}, nil }); err == nil {
		t.Error("decision \"maybe\" recorded")
	}
	if _, err := f.DecidePairRequest("0000000000000000", t0, approve("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown request: %v", err)
	}
}

func TestPairExpiry(t *testing.T) {
	f := NewFiles(t.TempDir())
	old := mustAdd(t, f, request("web-01", 0), 10)
	fresh := mustAdd(t, f, request("web-02", 9*time.Minute), 10)
	done := mustAdd(t, f, request("web-03", 0), 10)
	if _, err := f.DecidePairRequest(done.ReqID, t0.Add(time.Minute), approve("c")); err != nil {
		t.Fatal(err)
	}

	// Approving an expired request denies it instead.
	at := t0.Add(11 * time.Minute)
	_, err := f.DecidePairRequest(old.ReqID, at, approve("never"))
	var de *DecidedError
	if !errors.As(err, &de) || de.Reason != ReasonExpired || !strings.Contains(err.Error(), "expired") {
		t.Errorf("approve after expiry: %v", err)
	}
	if got, _ := f.GetPairRequest(old.ReqID); got.Status != PairDenied || got.Reason != ReasonExpired || got.Cert != "" {
		t.Errorf("expired request recorded as %+v", got)
	}

	// The sweep: web-02 expires now; the answers are kept for keep.
	expired, err := f.ExpirePairRequests(t0.Add(20*time.Minute), 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(expired) != 1 || expired[0].ReqID != fresh.ReqID || expired[0].Reason != ReasonExpired {
		t.Errorf("expired = %+v, want web-02 only", expired)
	}
	for _, id := range []string{old.ReqID, fresh.ReqID, done.ReqID} {
		if _, err := f.GetPairRequest(id); err != nil {
			t.Errorf("%s purged before keep: %v", id, err)
		}
	}
	// Later every answer is purged (decided at t0+1m, t0+11m, t0+20m).
	if _, err := f.ExpirePairRequests(t0.Add(41*time.Minute), 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{old.ReqID, fresh.ReqID, done.ReqID} {
		if _, err := f.GetPairRequest(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s not purged: %v", id, err)
		}
	}
	if _, err := os.Stat(f.queueLock()); err != nil {
		t.Errorf("the queue lock file must stay: %v", err)
	}
}

// decideChild is one approver of TestPairDecideTwoProcesses, in a child
// process: it waits for the file GO to appear, decides the request, and
// appends a line to ISSUED for each certificate it signs. It prints "won"
// or the error.
func decideChild() int {
	dir, reqid := os.Getenv("STORE_TEST_DECIDE"), os.Getenv("STORE_TEST_REQID")
	goFile, issued := os.Getenv("STORE_TEST_GO"), os.Getenv("STORE_TEST_ISSUED")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(goFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("never started")
			return 3
		}
	}
	f := NewFiles(dir)
	_, err := f.DecidePairRequest(reqid, time.Now(), func(PairRequest) (Decision, error) {
		out, err := os.OpenFile(issued, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return Decision{}, err
		}
		fmt.Fprintf(out, "cert for pid %d\n", os.Getpid())
		out.Close()
		time.Sleep(50 * time.Millisecond)
		return Decision{Status: PairApproved, Cert: "cert", CA: "ca"}, nil
	})
	if err != nil {
		fmt.Println(err)
		return 0
	}
	fmt.Println("won")
	return 0
}

func TestPairDecideTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	f := NewFiles(filepath.Join(dir, "state"))
	r := request("web-01", 0)
	r.Created, r.Expires = time.Now(), time.Now().Add(time.Hour)
	r = mustAdd(t, f, r, 10)
	goFile, issued := filepath.Join(dir, "go"), filepath.Join(dir, "issued")

	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STORE_TEST_DECIDE="+f.Dir(), "STORE_TEST_REQID="+r.ReqID,
			"STORE_TEST_GO="+goFile, "STORE_TEST_ISSUED="+issued)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	lines := strings.Count(string(mustRead(t, issued)), "\n")
	if lines != 1 {
		t.Errorf("two processes signed %d certificates, want 1:\n%s", lines, mustRead(t, issued))
	}
	got := outs[0].String() + outs[1].String()
	if strings.Count(got, "won") != 1 || !strings.Contains(got, "already approved") {
		t.Errorf("children said:\n%s", got)
	}
}

func TestRevocations(t *testing.T) {
	f := NewFiles(t.TempDir())
	set, warns, err := f.RevokedSerials()
	if err != nil || set.Len() != 0 || warns != nil {
		t.Fatalf("no file: %v %v %v", set, warns, err)
	}
	// A file written by hand or by the Perl dispatcher, in its forms.
	path := filepath.Join(f.Dir(), "revoked-serials")
	perl := "# old ones\nserial=0A1B\n0a:1b:2c\n2587 (0xa1b)\nnot-a-serial!\n"
	if err := os.WriteFile(path, []byte(perl), 0o640); err != nil {
		t.Fatal(err)
	}
	s1, _ := new(big.Int).SetString("c0ffee00112233445566778899aabbcc", 16)
	s2 := big.NewInt(0x1234) // no hex letter: written as 0x1234
	if err := f.RevokeSerial(s1, "web-01", "unpaired", t0); err != nil {
		t.Fatal(err)
	}
	if err := f.RevokeSerial(s2, "web-02", "replaced by\npairing request 0123", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.RevokeSerial(s1, "web-01", "again", t0); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o640) // the hand-written file kept its mode
	want := perl +
		"# revoked web-01 2026-05-01T12:00:00Z: unpaired\nc0ffee00112233445566778899aabbcc\n" +
		"# revoked web-02 2026-05-01T12:01:00Z: replaced by pairing request 0123\n0x1234\n"
	if d := cmp.Diff(want, string(mustRead(t, path))); d != "" {
		t.Errorf("revoked-serials (-want +got):\n%s", d)
	}
	set, warns, err = f.RevokedSerials()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*big.Int{s1, s2, big.NewInt(0x0a1b), big.NewInt(0x0a1b2c)} {
		if !set.Contains(n) {
			t.Errorf("serial %s not revoked", pki.FormatSerial(n))
		}
	}
	if set.Contains(big.NewInt(1234)) {
		t.Error("0x1234 was also read as decimal 1234")
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Error(), "line 5") {
		t.Errorf("warnings %v, want one for line 5", warns)
	}
	list, err := f.ListRevocations()
	if err != nil {
		t.Fatal(err)
	}
	wantList := []Revocation{
		{Serial: "serial=0A1B"}, {Serial: "0a:1b:2c"}, {Serial: "2587 (0xa1b)"}, {Serial: "not-a-serial!"},
		{Serial: "c0ffee00112233445566778899aabbcc", Host: "web-01", At: t0, Reason: "unpaired"},
		{Serial: "0x1234", Host: "web-02", At: t0.Add(time.Minute), Reason: "replaced by pairing request 0123"},
	}
	if d := cmp.Diff(wantList, list); d != "" {
		t.Errorf("ListRevocations (-want +got):\n%s", d)
	}
	if err := f.RevokeSerial(nil, "x", "y", t0); err == nil {
		t.Error("nil serial revoked")
	}
}

func TestRevocationsConcurrent(t *testing.T) {
	f := NewFiles(t.TempDir())
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.RevokeSerial(big.NewInt(int64(0xa00+i)), fmt.Sprintf("web-%02d", i), "test", t0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	set, _, err := f.RevokedSerials()
	if err != nil || set.Len() != 20 {
		t.Errorf("after 20 concurrent revocations: %d serials, %v", set.Len(), err)
	}
	assertMode(t, filepath.Join(f.Dir(), "revoked-serials"), ModeRecord)
}

func TestDeleteAgent(t *testing.T) {
	f := NewFiles(t.TempDir())
	if err := f.PutAgent(Agent{Hostname: "web-01", IP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteAgent("web-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.GetAgent("web-01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if err := f.DeleteAgent("web-01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if err := f.DeleteAgent("../x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteAgent(../x) = %v", err)
	}
}
