package wire

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// renewFixture is an agent as the lifecycle fuzz target sees it: its CA,
// its key and host name, and a fixed clock. testdata/renew holds them, so
// that the seed corpus (testdata/fuzz/FuzzLifecycleRequest) can carry
// certificates the agent accepts, and keep carrying them: the clock does
// not move.
type renewFixture struct {
	ca    *pki.CA
	roots *x509.CertPool
	key   crypto.Signer
	host  string
	now   time.Time
}

func loadRenewFixture(tb testing.TB) renewFixture {
	tb.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "renew", name))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	ca, err := pki.LoadCA(read("ca.crt"), read("ca.key"))
	if err != nil {
		tb.Fatal(err)
	}
	key, err := pki.ParseKeyPEM(read("agent.key"))
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return renewFixture{ca: ca, roots: roots, key: key, host: "web-01.example.com", now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// FuzzLifecycleRequest takes bodies of the agent's lifecycle requests
// through the checks the agent makes before it changes anything
// (roles/agent/lifecycle.go): strict decoding, then for /renew-complete
// pki.ParseCertsPEM of cert and ca and pki.VerifyAgent against the agent's
// CA, host name and key; for /revocations and /dispatcher-serial
// pki.ParseSerial of each serial. Refusals are errors with a message (an
// *IdentityError for the identity checks). A certificate that passes is
// for the agent's own key and host, chains to its CA for serverAuth, does
// not claim the dispatcher role, and passes again once written out as the
// agent writes agent.crt and read back.
func FuzzLifecycleRequest(f *testing.F) {
	fx := loadRenewFixture(f)
	csrPEM, err := pki.CreateCSR(pki.Options{}, fx.key, fx.host)
	if err != nil {
		f.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		f.Fatal(err)
	}
	cert, err := fx.ca.SignAgentCSR(pki.Options{Now: func() time.Time { return fx.now }}, csr, fx.host, 30)
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []any{
		RenewCompleteRequest{Cert: string(pki.CertPEM(cert)), CA: string(pki.CertPEM(fx.ca.Cert)), ReqID: "r1"},
		RenewCompleteRequest{Cert: string(pki.CertPEM(cert)) + string(pki.CertPEM(fx.ca.Cert))},
		RenewCompleteRequest{Cert: string(pki.CertPEM(fx.ca.Cert))},
		RevocationsRequest{Serials: []string{"0a1b", "0A:1B", "serial=0A1B", "2587 (0xa1b)", "12"}, ReqID: "r2"},
		DispatcherSerialRequest{Serial: pki.FormatSerial(cert.SerialNumber), ReqID: "r3"},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"cert":"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		decode := func(v any) bool {
			err := DecodeRequest(httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)), v)
			var re *RequestError
			if err != nil && (!errors.As(err, &re) || re.Msg == "") {
				t.Fatalf("decoding error %v (%T), want a *RequestError with a message", err, err)
			}
			return err == nil
		}
		var rc RenewCompleteRequest
		if decode(&rc) {
			checkRenewComplete(t, fx, rc)
		}
		var rv RevocationsRequest
		if decode(&rv) && len(rv.Serials) <= MaxRevocationsPush {
			for _, s := range rv.Serials {
				checkSerialText(t, s)
			}
		}
		var ds DispatcherSerialRequest
		if decode(&ds) {
			checkSerialText(t, ds.Serial)
		}
	})
}

func checkRenewComplete(t *testing.T, fx renewFixture, rc RenewCompleteRequest) {
	chain, err := pki.ParseCertsPEM([]byte(rc.Cert))
	if err != nil {
		if err.Error() == "" {
			t.Fatal("cert: refusal without a message")
		}
		return
	}
	if rc.CA != "" {
		if _, err := pki.ParseCertsPEM([]byte(rc.CA)); err != nil && err.Error() == "" {
			t.Fatal("ca: refusal without a message")
		}
	}
	verify := func(chain []*x509.Certificate) error {
		err := pki.VerifyAgent(chain, fx.roots, fx.host, fx.key.Public(), fx.now)
		var ie *pki.IdentityError
		if err != nil && (!errors.As(err, &ie) || ie.Reason == "") {
			t.Fatalf("VerifyAgent: %v (%T), want an *IdentityError with a reason", err, err)
		}
		return err
	}
	if verify(chain) != nil {
		return
	}
	leaf := chain[0]
	if !pki.PublicKeysEqual(leaf.PublicKey, fx.key.Public()) {
		t.Fatal("accepted a certificate for another key")
	}
	if r := pki.CertRole(leaf); r != pki.RoleAgent && r != pki.RoleNone {
		t.Fatalf("accepted a certificate with role %v", r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: fx.roots, Intermediates: inter, CurrentTime: fx.now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("accepted a certificate that does not chain to the agent's ca: %v", err)
	}
	named := false
	for _, n := range leaf.DNSNames {
		named = named || strings.EqualFold(n, fx.host)
	}
	if !named && !(len(leaf.DNSNames) == 0 && strings.EqualFold(leaf.Subject.CommonName, fx.host)) {
		t.Fatalf("accepted a certificate for %q / %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	var written []byte
	for _, c := range chain {
		written = append(written, pki.CertPEM(c)...)
	}
	back, err := pki.ParseCertsPEM(written)
	if err != nil {
		t.Fatalf("agent.crt as written does not read back: %v", err)
	}
	if err := verify(back); err != nil {
		t.Fatalf("agent.crt as written is refused: %v", err)
	}
}

// checkSerialText: a serial the agent takes is within 40 bytes, not
// negative, and what it writes (pki.FormatSerial) reads back as it.
func checkSerialText(t *testing.T, s string) {
	ns, err := pki.ParseSerial(s)
	if err != nil {
		if err.Error() == "" {
			t.Fatal("serial: refusal without a message")
		}
		return
	}
	for _, n := range ns {
		if n.Sign() < 0 || n.BitLen() > 320 {
			t.Fatalf("serial %q read as %x", s, n)
		}
		if back, err := pki.ParseSerial("0x" + pki.FormatSerial(n)); err != nil || len(back) != 1 || back[0].Cmp(n) != 0 {
			t.Fatalf("serial %x does not read back: %v %v", n, back, err)
		}
	}
}

// FuzzStreamRoundTrip writes a streamed run with StreamWriter (a stdout
// chunk, a stderr chunk, the result) and reads it back with readStream:
// every byte comes back exactly, whatever its encoding, every line is one
// JSON object of valid UTF-8 (what a Perl dispatcher reads), and nothing
// can be written after the result.
func FuzzStreamRoundTrip(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint16(6), 0)
	f.Add([]byte("\xff\xfe\x00 binary"), uint16(2), 1)
	f.Add([]byte(`{"exit":0}`+"\n"), uint16(0), -1)
	f.Add([]byte("\u2028\r\n\x1b[31m"), uint16(3), 126)
	f.Add([]byte{}, uint16(0), 137)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, exit int) {
		at := int(cut) % (len(data) + 1)
		out, errOut := data[:at], data[at:]
		rec := httptest.NewRecorder()
		sw := NewStreamWriter(rec)
		for _, e := range []StreamEvent{NewStreamEvent("stdout", out), NewStreamEvent("stderr", errOut)} {
			if err := sw.Event(e); err != nil {
				t.Fatal(err)
			}
		}
		final := RunResponse{Script: "s", Exit: exit, ReqID: "r"}
		final.SetOutput(data, errOut)
		if err := sw.Final(final); err != nil {
			t.Fatal(err)
		}
		if err := sw.Event(NewStreamEvent("stdout", data)); !errors.Is(err, ErrStreamDone) {
			t.Fatalf("Event after Final: %v", err)
		}
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ContentTypeNDJSON {
			t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
		}
		raw := rec.Body.Bytes()
		lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
		if len(lines) != 3 {
			t.Fatalf("%d lines, want 3:\n%s", len(lines), raw)
		}
		for _, l := range lines {
			if !utf8.Valid(l) || !json.Valid(l) || l[0] != '{' {
				t.Fatalf("line %q is not one json object in utf-8", l)
			}
		}
		var got []StreamEvent
		res, err := readStream(bytes.NewReader(raw), int64(len(raw)), func(e StreamEvent) { got = append(got, e) })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Stream != "stdout" || got[1].Stream != "stderr" ||
			!bytes.Equal(got[0].Bytes(), out) || !bytes.Equal(got[1].Bytes(), errOut) {
			t.Fatalf("events %+v, want %q and %q", got, out, errOut)
		}
		stdout, stderr := res.Output()
		if res.Exit != exit || !bytes.Equal(stdout, data) || !bytes.Equal(stderr, errOut) {
			t.Fatalf("result exit %d, %q, %q; want %d, %q, %q", res.Exit, stdout, stderr, exit, data, errOut)
		}
	})
}

// FuzzRunRequestFields reads an accepted /run body as a case-sensitive
// reader would (a Perl agent, a log line, the auth hook's view) and
// compares with what DecodeRequest gave: script, user name, token and
// request id are the same, and no key that differs from one of their
// names only in case was accepted. A body cannot run another script than
// the one its reader sees.
func FuzzRunRequestFields(f *testing.F) {
	for _, s := range []string{
		`{"script":"deploy","args":["a"],"reqid":"r","username":"ci","token":"t"}`,
		`{"script":"hello","Script":"evil"}`, `{"script":"hello","script":"evil"}`,
		`{"ſcript":"touch"}`, `{"scr\u0069pt":"x","reqid":null}`, `{"token":"a","future":{"token":"b"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req RunRequest
		if DecodeRequest(httptest.NewRequest(http.MethodPost, "/run", bytes.NewReader(body)), &req) != nil {
			return
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("accepted body is not an object: %v", err)
		}
		fields := map[string]string{"script": req.Script, "reqid": req.ReqID, "username": req.Username, "token": req.Token}
		for k, v := range raw {
			for name, got := range fields {
				if k != name && strings.EqualFold(k, name) {
					t.Fatalf("accepted key %q for field %q", k, name)
				}
				var want string
				if k == name && json.Unmarshal(v, &want) == nil && want != got {
					t.Fatalf("%s is %q in the body, %q decoded", name, want, got)
				}
			}
		}
	})
}

// FuzzRunAnswer checks the agent's streaming encoder against
// encoding/json: WriteRunAnswer of output cut into arbitrary chunks writes
// the bytes WriteJSON writes for the same RunResponse with SetOutput of
// the joined output, with a Content-Length that is their length, and
// StreamWriter.Output writes the line Event(NewStreamEvent) writes. What
// is written reads back as exactly the output.
func FuzzRunAnswer(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), []byte("warn\n"), uint16(3), "deploy", 0, "")
	f.Add([]byte("\xff\xfe\x00 binary \u2028"), []byte("é€\x80"), uint16(1), "a\"b\\c", 1, "SIGKILL")
	f.Add([]byte(strings.Repeat("\x01", 300)), []byte("<&>"), uint16(7), "", -1, "")
	f.Add([]byte("\xe2\x82"), []byte("\xac"), uint16(1), "x\x00y", 126, "timeout")
	f.Fuzz(func(t *testing.T, stdout, stderr []byte, every uint16, script string, exit int, signal string) {
		chunks := func(b []byte) [][]byte {
			n := int(every)%17 + 1
			var out [][]byte
			for len(b) > n {
				out = append(out, b[:n])
				b = b[n:]
			}
			return append(out, b)
		}
		resp := RunResponse{Script: script, Exit: exit, ReqID: "r-1", Signal: signal, Truncated: exit%2 == 0, DurationMS: int64(every)}
		got := httptest.NewRecorder()
		if err := WriteRunAnswer(got, &RunAnswer{Response: resp, Stdout: chunks(stdout), Stderr: chunks(stderr)}); err != nil {
			t.Fatal(err)
		}
		want := httptest.NewRecorder()
		resp.SetOutput(stdout, stderr)
		WriteJSON(want, http.StatusOK, resp)
		if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("WriteRunAnswer wrote\n%q\nencoding/json writes\n%q", got.Body.Bytes(), want.Body.Bytes())
		}
		if cl := got.Header().Get("Content-Length"); cl != want.Header().Get("Content-Length") {
			t.Fatalf("Content-Length %s for %d bytes", cl, got.Body.Len())
		}
		var back RunResponse
		if err := json.Unmarshal(got.Body.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if o, e := back.Output(); !bytes.Equal(o, stdout) || !bytes.Equal(e, stderr) {
			t.Fatalf("output read back as %q, %q", o, e)
		}

		lines := func(write func(*StreamWriter) error) []byte {
			rec := httptest.NewRecorder()
			if err := write(NewStreamWriter(rec)); err != nil {
				t.Fatal(err)
			}
			return rec.Body.Bytes()
		}
		raw := lines(func(s *StreamWriter) error { return s.Output("stdout", stdout) })
		if enc := lines(func(s *StreamWriter) error { return s.Event(NewStreamEvent("stdout", stdout)) }); !bytes.Equal(raw, enc) {
			t.Fatalf("Output wrote\n%q\nEvent writes\n%q", raw, enc)
		}
	})
}
