package pki_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

// identity is what a caller sees of a verification result.
type identity struct {
	Legacy bool
	Kind   pki.IdentityKind
	Reason string
}

func toIdentity(legacy bool, err error) identity {
	id := identity{Legacy: legacy}
	if err == nil {
		return id
	}
	var ie *pki.IdentityError
	if !errors.As(err, &ie) {
		return identity{Reason: "not an *IdentityError: " + err.Error()}
	}
	if ie.Error() != ie.Reason {
		return identity{Reason: "Error() differs from Reason"}
	}
	id.Kind, id.Reason = ie.Kind, ie.Reason
	return id
}

func chain(c tls.Certificate) []*x509.Certificate { return []*x509.Certificate{c.Leaf} }

func TestVerifyDispatcher(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	disp := ca.Dispatcher(t)
	agent := ca.Agent(t, "web-01")
	legacy := ca.Legacy(t, "dispatcher")
	now := time.Now()
	agentURL, _ := url.Parse(pki.RoleAgentURI)
	dispURL, _ := url.Parse(pki.RoleDispatcherURI)
	unknownURL, _ := url.Parse("urn:dispatcher:api")
	// An agent-role certificate that also (wrongly) allows clientAuth.
	agentClient := ca.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "web-02"}, DNSNames: []string{"web-02"},
		URIs:      []*url.URL{agentURL},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	bothRoles := ca.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "both"}, URIs: []*url.URL{dispURL, agentURL},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	})
	unknownRole := ca.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "api"}, URIs: []*url.URL{unknownURL},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	})
	serverOnlyLegacy := ca.Issue(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "old"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	at := func(d time.Duration) time.Time { return disp.Leaf.NotAfter.Add(d) }

	tests := []struct {
		name  string
		chain []*x509.Certificate
		roots *x509.CertPool
		now   time.Time
		want  identity
	}{
		{"dispatcher", chain(disp), ca.Pool(), now, identity{}},
		{"dispatcher zero time", chain(disp), ca.Pool(), time.Time{}, identity{}},
		{"legacy", chain(legacy), ca.Pool(), now, identity{Legacy: true}},
		{"agent as client", chain(agent), ca.Pool(), now,
			identity{Kind: pki.IdentityWrongRole, Reason: "agent certificate presented as dispatcher"}},
		{"agent role with clientAuth", chain(agentClient), ca.Pool(), now,
			identity{Kind: pki.IdentityWrongRole, Reason: "agent certificate presented as dispatcher"}},
		{"both roles", chain(bothRoles), ca.Pool(), now,
			identity{Kind: pki.IdentityWrongRole, Reason: "certificate carries an unknown dispatcher role"}},
		{"unknown role", chain(unknownRole), ca.Pool(), now,
			identity{Kind: pki.IdentityWrongRole, Reason: "certificate carries an unknown dispatcher role"}},
		{"server-only legacy", chain(serverOnlyLegacy), ca.Pool(), now,
			identity{Kind: pki.IdentityWrongUsage, Reason: "certificate not valid for client authentication"}},
		{"other ca", chain(other.Dispatcher(t)), ca.Pool(), now,
			identity{Kind: pki.IdentityUntrusted, Reason: "certificate not signed by the dispatcher ca"}},
		{"agent of other ca", chain(other.Agent(t, "web-01")), ca.Pool(), now,
			identity{Kind: pki.IdentityUntrusted, Reason: "certificate not signed by the dispatcher ca"}},
		{"expired", chain(disp), ca.Pool(), at(time.Second), identity{Kind: pki.IdentityExpired,
			Reason: "certificate expired on " + disp.Leaf.NotAfter.UTC().Format("2006-01-02 15:04:05 UTC")}},
		{"not yet valid", chain(disp), ca.Pool(), disp.Leaf.NotBefore.Add(-time.Minute), identity{Kind: pki.IdentityExpired,
			Reason: "certificate not valid before " + disp.Leaf.NotBefore.UTC().Format("2006-01-02 15:04:05 UTC") + "; check the clocks"}},
		{"no certificate", nil, ca.Pool(), now, identity{Kind: pki.IdentityNoCertificate, Reason: "no certificate presented"}},
		{"no roots", chain(disp), nil, now,
			identity{Kind: pki.IdentityNoCertificate, Reason: "no dispatcher ca configured to verify the certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toIdentity(pki.VerifyDispatcher(tt.chain, tt.roots, tt.now))
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("VerifyDispatcher (-want +got):\n%s", d)
			}
		})
	}
}

func TestVerifyAgent(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	agent := ca.Agent(t, "web-01.example")
	agent2 := ca.Agent(t, "web-02.example")
	disp := ca.Dispatcher(t)
	legacy := ca.Legacy(t, "old-01")
	now := time.Now()
	pin := func(c tls.Certificate) crypto.PublicKey { return c.Leaf.PublicKey }

	tests := []struct {
		name   string
		chain  []*x509.Certificate
		host   string
		pinned crypto.PublicKey
		now    time.Time
		want   identity
	}{
		{"agent pinned", chain(agent), "web-01.example", pin(agent), now, identity{}},
		{"agent unpinned", chain(agent), "web-01.example", nil, now, identity{}},
		{"host case", chain(agent), "WEB-01.Example", pin(agent), now, identity{}},
		{"wrong host", chain(agent), "web-02.example", nil, now, identity{Kind: pki.IdentityHostMismatch,
			Reason: `host name mismatch: certificate is for "web-01.example", dialled "web-02.example"`}},
		{"wrong pinned key", chain(agent), "web-01.example", pin(agent2), now,
			identity{Kind: pki.IdentityKeyMismatch, Reason: "public key does not match the pinned key"}},
		{"dispatcher as agent", chain(disp), "localhost", nil, now,
			identity{Kind: pki.IdentityWrongRole, Reason: "dispatcher certificate presented as agent"}},
		{"other ca", chain(other.Agent(t, "web-01.example")), "web-01.example", nil, now,
			identity{Kind: pki.IdentityUntrusted, Reason: "certificate not signed by the dispatcher ca"}},
		{"legacy pinned", chain(legacy), "old-01", pin(legacy), now, identity{}},
		{"legacy cn case", chain(legacy), "OLD-01", pin(legacy), now, identity{}},
		{"legacy without pin", chain(legacy), "old-01", nil, now, identity{Kind: pki.IdentityNotPinned,
			Reason: `legacy agent certificate (no role) and no pinned key for "old-01"; re-pair the agent`}},
		{"legacy wrong cn", chain(legacy), "old-02", pin(legacy), now, identity{Kind: pki.IdentityHostMismatch,
			Reason: `host name mismatch: certificate is for "old-01", dialled "old-02"`}},
		{"legacy wrong pin", chain(legacy), "old-01", pin(agent), now,
			identity{Kind: pki.IdentityKeyMismatch, Reason: "public key does not match the pinned key"}},
		{"expired", chain(agent), "web-01.example", pin(agent), agent.Leaf.NotAfter.Add(time.Minute), identity{Kind: pki.IdentityExpired,
			Reason: "certificate expired on " + agent.Leaf.NotAfter.UTC().Format("2006-01-02 15:04:05 UTC")}},
		{"ca and leaf expired", chain(agent), "web-01.example", pin(agent), ca.Cert.NotAfter.Add(time.Minute), identity{Kind: pki.IdentityExpired,
			Reason: "certificate expired on " + agent.Leaf.NotAfter.UTC().Format("2006-01-02 15:04:05 UTC")}},
		{"no host", chain(agent), "", nil, now, identity{Kind: pki.IdentityNoCertificate,
			Reason: "no host name to verify the agent certificate against"}},
		{"no certificate", nil, "web-01.example", nil, now,
			identity{Kind: pki.IdentityNoCertificate, Reason: "no certificate presented"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toIdentity(false, pki.VerifyAgent(tt.chain, ca.Pool(), tt.host, tt.pinned, tt.now))
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("VerifyAgent (-want +got):\n%s", d)
			}
		})
	}
}

// TestHandshake runs real TLS on loopback: an agent-like server that
// requires and verifies client certificates and calls VerifyDispatcher, and
// a dispatcher-like client that calls VerifyAgent.
func TestHandshake(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	agent := ca.Agent(t, "agent1.test")
	disp := ca.Dispatcher(t)
	legacy := ca.Legacy(t, "dispatcher")
	pinnedSerial := legacy.Leaf.SerialNumber

	var mu sync.Mutex
	var serverErr error
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.Config.ErrorLog = discardLogger()
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{agent},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			legacy, err := pki.VerifyDispatcher(cs.PeerCertificates, ca.Pool(), time.Now())
			if err == nil && legacy && cs.PeerCertificates[0].SerialNumber.Cmp(pinnedSerial) != 0 {
				err = errors.New("serial mismatch")
			}
			mu.Lock()
			serverErr = err
			mu.Unlock()
			return err
		},
	}
	srv.StartTLS()
	defer srv.Close()

	tests := []struct {
		name       string
		client     tls.Certificate
		pinned     crypto.PublicKey
		serverName string
		wantBody   string
		wantServer string // error VerifyDispatcher returned, "" for none
		wantClient string // part of the client's error
	}{
		{"dispatcher", disp, agent.Leaf.PublicKey, "agent1.test", "hello dispatcher", "", ""},
		{"legacy dispatcher with serial pin", legacy, agent.Leaf.PublicKey, "agent1.test", "hello dispatcher", "", ""},
		{"agent cert as client", ca.Agent(t, "web-09"), agent.Leaf.PublicKey, "agent1.test", "", "", "bad certificate"},
		{"agent role with clientAuth", agentWithClientAuth(t, ca), agent.Leaf.PublicKey, "agent1.test", "",
			"agent certificate presented as dispatcher", "bad certificate"},
		{"other ca", other.Dispatcher(t), agent.Leaf.PublicKey, "agent1.test", "", "", "unknown certificate authority"},
		{"legacy with other serial", ca.Legacy(t, "dispatcher"), agent.Leaf.PublicKey, "agent1.test", "", "serial mismatch", "bad certificate"},
		{"agent key not the pinned one", disp, disp.Leaf.PublicKey, "agent1.test", "", "", "public key does not match the pinned key"},
		{"agent not the dialled host", disp, nil, "agent2.test", "", "", `host name mismatch: certificate is for "agent1.test", dialled "agent2.test"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			serverErr = nil
			mu.Unlock()
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
				// The dispatcher checks the agent itself: chain,
				// usage, role, host name and pinned key.
				InsecureSkipVerify: true,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &tt.client, nil
				},
				VerifyConnection: func(cs tls.ConnectionState) error {
					return pki.VerifyAgent(cs.PeerCertificates, ca.Pool(), tt.serverName, tt.pinned, time.Now())
				},
			}}}
			defer client.CloseIdleConnections()
			resp, err := client.Get(srv.URL)
			var body string
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				body, err = string(b), rerr
			}
			if body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			wantErrContains(t, err, tt.wantClient)
			mu.Lock()
			gotServer := errString(serverErr)
			mu.Unlock()
			if gotServer != tt.wantServer {
				t.Errorf("VerifyDispatcher error = %q, want %q", gotServer, tt.wantServer)
			}
		})
	}
}

func TestVerifyAgentCAExpired(t *testing.T) {
	now := time.Now()
	// A CA that expires in an hour, and an agent certificate that outlives it.
	ca, err := pki.NewCA(fixedClock(now.AddDate(-10, 0, 0).Add(time.Hour)), "short CA")
	if err != nil {
		t.Fatal(err)
	}
	key, csr := newCSR(t, "web-01")
	cert, err := ca.SignAgentCSR(fixedClock(now), csr, "web-01", 30)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if err := pki.VerifyAgent([]*x509.Certificate{cert}, roots, "web-01", key.Public(), now); err != nil {
		t.Fatalf("before the ca expires: %v", err)
	}
	got := toIdentity(false, pki.VerifyAgent([]*x509.Certificate{cert}, roots, "web-01", key.Public(), now.Add(2*time.Hour)))
	want := identity{Kind: pki.IdentityExpired, Reason: "ca certificate expired on " + ca.Cert.NotAfter.UTC().Format("2006-01-02 15:04:05 UTC")}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("after the ca expired (-want +got):\n%s", d)
	}
}

func agentWithClientAuth(t *testing.T, ca *pkitest.CA) tls.Certificate {
	u, _ := url.Parse(pki.RoleAgentURI)
	return ca.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "web-02"}, DNSNames: []string{"web-02"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
}

func TestIdentityErrorUnwrap(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	_, err := pki.VerifyDispatcher(chain(other.Dispatcher(t)), ca.Pool(), time.Now())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("error %v does not wrap the x509 error", err)
	}
	if strings.Contains(err.Error(), "x509") {
		t.Fatalf("Error() shows the internal error: %q", err)
	}
}
