package pairing

import (
	"context"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

func (w *world) submit(t *testing.T, host string) control.PendingRequest {
	t.Helper()
	pr, err := w.p.Submit(newAgent(t, host).req, "192.0.2.9", w.ca.Dispatcher(t).Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

func TestPrompt(t *testing.T) {
	w := newWorld(t, 10)
	if err := w.st.PutAgent(store.Agent{Hostname: "web-02", IP: "10.0.0.2", Serial: "0a1b"}); err != nil {
		t.Fatal(err)
	}
	r1 := w.submit(t, "web-01")
	r2 := w.submit(t, "web-02")

	in, typing := io.Pipe()
	out := &syncBuffer{}
	nudge := make(chan struct{}, 1)
	p := newPrompt(in, out, w.p, 20*time.Millisecond, nudge)
	done := make(chan struct{})
	go func() {
		p.run(context.Background())
		close(done)
	}()
	say := func(line string) {
		t.Helper()
		if _, err := io.WriteString(typing, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}

	// Each request is shown with its host name, source IP, reqid and code.
	waitFor(t, out, "new request [1] web-01  from 192.0.2.9  reqid "+r1.ReqID+"  code "+r1.Code+"\n")
	waitFor(t, out, "new request [2] web-02  from 192.0.2.9  reqid "+r2.ReqID+"  code "+r2.Code+"  ALREADY PAIRED (serial 0a1b)\n")
	waitFor(t, out, "[1] web-01 code "+r1.Code+": a approve, d deny, s skip")

	say("l")
	waitFor(t, out, "> [1] web-01")
	waitFor(t, out, "  [2] web-02")

	// s skips to the next one; a on a registered host name says how to replace.
	say("s")
	waitFor(t, out, "skipped [1] web-01; it stays pending (a1 approves it later)")
	waitFor(t, out, "[2] web-02 code "+r2.Code+": a approve")
	say("a")
	waitFor(t, out, "web-02 is already paired; r2 approves it, replacing the registered agent and revoking its certificate")
	say("zap")
	waitFor(t, out, `unknown command "zap"`)
	say("a9")
	waitFor(t, out, "no pending request 9")

	say("d2")
	waitFor(t, out, "denied [2] web-02")
	if r, _ := w.st.GetPairRequest(r2.ReqID); r.Status != store.PairDenied {
		t.Errorf("web-02 after d2: %s", r.Status)
	}
	say("a1")
	waitFor(t, out, "approved [1] web-01: certificate serial ")
	if a, err := w.st.GetAgent("web-01"); err != nil || a.ReqID != r1.ReqID {
		t.Errorf("web-01 after a1: %+v, %v", a, err)
	}
	waitFor(t, out, "waiting for pairing requests")

	// Requests from another listener appear; decisions taken elsewhere
	// are reported.
	r3 := w.submit(t, "web-03")
	nudge <- struct{}{}
	waitFor(t, out, "new request [3] web-03")
	if _, err := w.p.Deny(r3.ReqID, "from another terminal"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "[3] web-03 is no longer pending (decided by another process, or expired)")
	r4 := w.submit(t, "web-04")
	waitFor(t, out, "new request [4] web-04")
	say("a")
	waitFor(t, out, "approved [4] web-04")
	if a, err := w.st.GetAgent("web-04"); err != nil || a.ReqID != r4.ReqID {
		t.Errorf("web-04: %+v, %v", a, err)
	}
	// Numbers stay with their requests: a1 no longer names anything.
	say("a1")
	waitFor(t, out, "no pending request 1")

	say("q")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("q did not quit")
	}
	if strings.Contains(out.String(), r1.Nonce) {
		t.Error("the prompt showed a nonce")
	}
}

func TestPromptReplaceAndEOF(t *testing.T) {
	w := newWorld(t, 10)
	first := w.submit(t, "web-01")
	if _, err := w.p.Approve(first.ReqID, false); err != nil {
		t.Fatal(err)
	}
	old, _ := w.st.GetAgent("web-01")
	again := w.submit(t, "web-01")

	out := &syncBuffer{}
	in := strings.NewReader("r1\n") // then the end of the input: quit
	p := newPrompt(in, out, w.p, time.Hour, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the end of the input did not quit:\n%s", out)
	}
	if !strings.Contains(out.String(), "approved [1] web-01") || !strings.Contains(out.String(), "revoked the certificate it replaced (serial "+old.Serial+")") {
		t.Errorf("output:\n%s", out)
	}
	if a, _ := w.st.GetAgent("web-01"); a.ReqID != again.ReqID {
		t.Errorf("record after r1: %+v", a)
	}
}

// TestPromptTags: the operator sees the tags an agent claims before
// approving them into the registry.
func TestPromptTags(t *testing.T) {
	w := newWorld(t, 10)
	a := newAgent(t, "web-05")
	now := time.Now()
	tags := map[string]string{"role": "web", "env": "prod"}
	r, err := w.st.AddPairRequest(store.PairRequest{Hostname: "web-05", IP: "192.0.2.9", Port: 7443, CSR: a.req.CSR, Nonce: a.req.Nonce,
		Code: "123456", Created: now, Expires: now.Add(time.Hour), Tags: tags}, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	p := newPrompt(strings.NewReader("l\na\n"), out, w.p, time.Hour, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.run(ctx)
	line := "[1] web-05  from 192.0.2.9  reqid " + r.ReqID + "  code 123456  tags env=prod,role=web\n"
	for _, want := range []string{"new request " + line, "> " + line, "approved [1] web-05"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got, err := w.st.GetAgent("web-05"); err != nil || !maps.Equal(got.Tags, tags) {
		t.Errorf("registry record after approval: %+v, %v; want tags %v", got, err, tags)
	}
}
