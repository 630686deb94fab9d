package pkitest_test

import (
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

func TestWriteFilesAndLoad(t *testing.T) {
	ca := pkitest.NewCA(t)
	dir := t.TempDir()
	ca.WriteFiles(t, dir)
	modes := map[string]fs.FileMode{}
	for _, name := range []string{"ca.crt", "ca.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		modes[name] = fi.Mode()
	}
	if d := cmp.Diff(map[string]fs.FileMode{"ca.crt": 0o644, "ca.key": 0o600}, modes); d != "" {
		t.Fatalf("modes (-want +got):\n%s", d)
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	loaded, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || string(certPEM) != string(ca.CertPEM()) || string(keyPEM) != string(ca.KeyPEM()) {
		t.Fatal("files differ from the CA")
	}
}

func TestCertificates(t *testing.T) {
	ca := pkitest.NewCA(t)
	now := time.Now()
	type shape struct {
		Role     pki.Role
		CN       string
		DNS      []string
		IPs      int
		EKU      []x509.ExtKeyUsage
		SmallSer bool
		Verifies bool
		HasKey   bool
	}
	agent := ca.Agent(t, "web-01")
	disp := ca.Dispatcher(t)
	legacy := ca.Legacy(t, "dispatcher")
	legacy2 := ca.Legacy(t, "web-02")
	describe := func(c *x509.Certificate, key any) shape {
		_, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return shape{
			Role: pki.CertRole(c), CN: c.Subject.CommonName, DNS: c.DNSNames, IPs: len(c.IPAddresses),
			EKU: c.ExtKeyUsage, SmallSer: c.SerialNumber.BitLen() <= 16, Verifies: err == nil, HasKey: key != nil,
		}
	}
	got := []shape{
		describe(agent.Leaf, agent.PrivateKey),
		describe(disp.Leaf, disp.PrivateKey),
		describe(legacy.Leaf, legacy.PrivateKey),
	}
	want := []shape{
		{Role: pki.RoleAgent, CN: "web-01", DNS: []string{"web-01"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Verifies: true, HasKey: true},
		{Role: pki.RoleDispatcher, CN: "dispatcher", DNS: []string{"localhost"}, IPs: 2,
			EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, Verifies: true, HasKey: true},
		{Role: pki.RoleNone, CN: "dispatcher", SmallSer: true, Verifies: true, HasKey: true},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("certificates (-want +got):\n%s", d)
	}
	if legacy.Leaf.SerialNumber.Cmp(legacy2.Leaf.SerialNumber) == 0 {
		t.Fatal("two legacy certificates share a serial")
	}

	certPEM, keyPEM := pkitest.PEM(t, agent)
	c, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(agent.Leaf) || !pki.PublicKeysEqual(k.Public(), c.PublicKey) {
		t.Fatal("PEM does not round-trip the agent certificate")
	}
}
