package control

import (
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// crashEnv carries the crash point to the child process of
// TestApproveKilled.
const crashEnv = "DISPATCHER_TEST_CRASH_AT"

// killer is a store whose writes kill this process (kill -9, no cleanup)
// right after the write named at succeeded.
type killer struct {
	*store.Files
	at string
}

func (k killer) PutAgent(a store.Agent) error {
	if err := k.Files.PutAgent(a); err != nil {
		return err
	}
	k.crash("put-agent")
	return nil
}

func (k killer) RevokeSerial(serial *big.Int, host, reason string, at time.Time) error {
	if err := k.Files.RevokeSerial(serial, host, reason, at); err != nil {
		return err
	}
	k.crash("revoke")
	return nil
}

func (k killer) crash(point string) {
	if k.at == point {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal arrives; nothing else runs
	}
}

// TestApproveKilled kills a real process with SIGKILL at each point of an
// approval (after the old certificate is revoked, after the registry record
// is written, after the approval is recorded) and checks what the next
// process finds: every file readable, and either a request still pending
// that a second approve completes, without --replace when the record is
// its own, or a completed approval.
func TestApproveKilled(t *testing.T) {
	if at := os.Getenv(crashEnv); at != "" {
		approveAndCrash(t, at)
		return
	}
	for _, tc := range []struct {
		at      string
		replace bool // web-05 is paired already
		pending bool // the request is still pending afterwards
	}{
		{at: "revoke", replace: true, pending: true},
		{at: "put-agent", pending: true},
		{at: "put-agent", replace: true, pending: true},
		{at: "after-approve", pending: false},
	} {
		t.Run(tc.at+map[bool]string{true: "-replace"}[tc.replace], func(t *testing.T) {
			w := newPairWorld(t, nil)
			dir := filepath.Dir(w.st.Dir())
			var oldSerial string
			if tc.replace {
				pr, _ := w.submit("web-05", 7443)
				a, err := w.p.Approve(pr.ReqID, false)
				if err != nil {
					t.Fatal(err)
				}
				oldSerial = a.Agent.Serial
			}
			pr, _ := w.submit("web-05", 7443)

			cmd := exec.Command(os.Args[0], "-test.run=^TestApproveKilled$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+tc.at, "CRASH_DIR="+dir, "CRASH_REQID="+pr.ReqID,
				"CRASH_REPLACE="+map[bool]string{true: "1"}[tc.replace])
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child was not killed: %v\n%s", err, out)
			}

			// What the next process finds.
			st := store.NewFiles(w.st.Dir())
			agents, err := st.ListAgents()
			if err != nil {
				t.Fatalf("registry unreadable after the crash: %v", err)
			}
			if _, err := st.ListPairRequests(time.Now()); err != nil {
				t.Fatalf("pairing queue unreadable after the crash: %v", err)
			}
			revoked, _, err := st.RevokedSerials()
			if err != nil {
				t.Fatalf("revocations unreadable after the crash: %v", err)
			}
			if tc.replace && !revoked.Contains(mustSerial(t, oldSerial)) {
				t.Errorf("old certificate %s not revoked", oldSerial)
			}
			leftovers, _ := filepath.Glob(filepath.Join(w.st.Dir(), "*", ".*.tmp-*"))
			if len(leftovers) != 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
			req, err := st.GetPairRequest(pr.ReqID)
			if err != nil {
				t.Fatal(err)
			}
			if (req.Status == store.PairPending) != tc.pending {
				t.Fatalf("request status %q after a crash at %s", req.Status, tc.at)
			}
			if !tc.pending {
				if len(agents) != 1 || agents[0].ReqID != pr.ReqID || req.Cert == "" {
					t.Errorf("completed approval: agents %+v, request %+v", agents, req)
				}
				if _, err := w.p.Approve(pr.ReqID, false); err == nil {
					t.Error("a decided request was approved twice")
				}
				return
			}
			// The operator runs approve again (with --replace when the
			// host was paired before): it completes.
			a, err := w.p.Approve(pr.ReqID, tc.replace)
			if err != nil {
				t.Fatalf("approve after the crash: %v", err)
			}
			got, err := st.GetAgent("web-05")
			if err != nil || got.Serial != a.Agent.Serial || got.ReqID != pr.ReqID {
				t.Errorf("record after the second approve: %+v, %v (issued %s)", got, err, a.Agent.Serial)
			}
			if req, _ := st.GetPairRequest(pr.ReqID); req.Status != store.PairApproved || req.Cert == "" {
				t.Errorf("request after the second approve: %+v", req)
			}
			if revoked, _, _ := st.RevokedSerials(); revoked.Contains(mustSerial(t, a.Agent.Serial)) {
				t.Error("the delivered certificate is revoked")
			}
		})
	}
}

func mustSerial(t *testing.T, s string) *big.Int {
	t.Helper()
	n, err := parseRecordSerial(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// approveAndCrash is the child of TestApproveKilled.
func approveAndCrash(t *testing.T, at string) {
	dir := os.Getenv("CRASH_DIR")
	st := store.NewFiles(filepath.Join(dir, "state"))
	k := killer{Files: st, at: at}
	p, err := NewPairing(PairingOptions{Queue: st, Registry: k, Revocations: k,
		CA: Pair{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")}, CertDays: 30, PKI: pki.Options{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Approve(os.Getenv("CRASH_REQID"), os.Getenv("CRASH_REPLACE") == "1"); err != nil {
		t.Fatal(err)
	}
	k.crash("after-approve")
	t.Fatalf("no crash at %s", at)
}
