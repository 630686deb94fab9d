package control

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// legacyAgent starts an agent of the fleet that presents cert (one the
// Perl dispatcher issued: CN only) and answers as name; it returns the
// port.
func (f *fleet) legacyAgent(name string, cert tls.Certificate) int {
	f.t.Helper()
	srv := httptest.NewUnstartedServer(f.handler(name))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    f.ca.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	f.t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// An agent paired by the Perl dispatcher has a certificate without role
// or SAN and a registry record without a pinned key. Its first contact is
// accepted on chain and CN, and pins its key; from then on the pin
// decides. A legacy certificate for another name, or for a host the
// registry does not know, is refused.
func TestLegacyAgentPinnedAtFirstUse(t *testing.T) {
	f := newFleet(t)
	cert := f.ca.Legacy(t, "perl-01")
	port := f.legacyAgent("perl-01", cert)
	perl := store.Agent{Hostname: "perl-01", IP: "127.0.0.1", Paired: "2024-01-15T08:00:00+01:00",
		Expiry: pki.FormatOpenSSLTime(cert.Leaf.NotAfter), ReqID: "e5f6a7b8"}
	f.register(perl)
	e := f.engine(nil)
	ping := func(host string) PingResult {
		t.Helper()
		rep, err := e.Ping(context.Background(), PingRequest{Hosts: []string{host}})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Results[0]
	}
	target := "perl-01:" + strconv.Itoa(port)

	for range 2 {
		if r := ping(target); r.Status != StatusOK {
			t.Fatalf("ping of the Perl-paired agent: %+v", r)
		}
	}
	want, err := pki.Fingerprint(cert.Leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.st.GetAgent("perl-01")
	if err != nil || rec.KeyFingerprint != want {
		t.Fatalf("record after first contact: key_fingerprint %q (%v), want %q", rec.KeyFingerprint, err, want)
	}
	if rec.Paired != perl.Paired || rec.Expiry != perl.Expiry || rec.ReqID != perl.ReqID || rec.Serial != "" {
		t.Errorf("Perl fields changed: %+v", rec)
	}
	if n := strings.Count(f.logs(), "ACTION=key-pin HOST=perl-01 KEY_FINGERPRINT="+want); n != 1 {
		t.Errorf("want one key-pin line, got %d:\n%s", n, f.logs())
	}

	// Another key under that name, from the same CA: refused now.
	other := f.legacyAgent("perl-01", f.ca.Legacy(t, "perl-01"))
	if r := ping("perl-01:" + strconv.Itoa(other)); r.Status == StatusOK || !strings.Contains(r.Error, "does not match the key pinned for perl-01") {
		t.Errorf("other key after the pin: %+v", r)
	}

	// A legacy certificate for another name, on an unpinned record.
	f.register(store.Agent{Hostname: "perl-02", IP: "127.0.0.1"})
	wrong := f.legacyAgent("perl-02", f.ca.Legacy(t, "perl-03"))
	if r := ping("perl-02:" + strconv.Itoa(wrong)); r.Status == StatusOK || !strings.Contains(r.Error, "host name mismatch") {
		t.Errorf("legacy certificate for another name: %+v", r)
	}
	if rec, _ := f.st.GetAgent("perl-02"); rec.KeyFingerprint != "" {
		t.Errorf("refused agent pinned: %+v", rec)
	}

	// A host the registry does not know: no record, no first use.
	e2 := f.engine(func(o *Options) { o.Resolve = func(context.Context, string) error { return nil } })
	stranger := f.legacyAgent("localhost", f.ca.Legacy(t, "localhost"))
	rep, err := e2.Ping(context.Background(), PingRequest{Hosts: []string{"localhost:" + strconv.Itoa(stranger)}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; r.Status == StatusOK || !strings.Contains(r.Error, "no pinned key") {
		t.Errorf("unregistered legacy agent: %+v", r)
	}
}
