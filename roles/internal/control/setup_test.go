package control

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func fixedNow() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }

func paths(dir, name string) Pair {
	return Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestSetupCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "dispatcher") // created on demand
	at := paths(dir, "ca")
	o := pki.Options{Now: fixedNow}
	w, err := SetupCA(o, nil, at, "test CA", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, at.Key); got != 0o600 {
		t.Errorf("ca.key mode %04o, want 0600", got)
	}
	if got := mode(t, at.Cert); got != 0o644 {
		t.Errorf("ca.crt mode %04o, want 0644", got)
	}
	ca, err := LoadCA(at)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "test CA" {
		t.Errorf("CA cert: IsCA=%v CN=%q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	if !ca.Cert.Equal(w.Cert) {
		t.Error("written certificate differs from the one reported")
	}

	// Refused without force, nothing changed.
	before, _ := os.ReadFile(at.Key)
	_, err = SetupCA(o, nil, at, "other", false)
	var ex *ExistsError
	if !errors.As(err, &ex) || len(ex.Paths) != 2 {
		t.Fatalf("second SetupCA: %v, want ExistsError naming both files", err)
	}
	after, _ := os.ReadFile(at.Key)
	if string(before) != string(after) {
		t.Error("refused SetupCA changed ca.key")
	}

	// Forced: new material, old kept.
	w2, err := SetupCA(o, nil, at, "second CA", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(w2.Replaced) != 2 {
		t.Fatalf("replaced %v, want two backups", w2.Replaced)
	}
	for _, b := range w2.Replaced {
		if !strings.Contains(b, ".old-20261126T120000Z") {
			t.Errorf("backup name %q", b)
		}
	}
	old, _ := os.ReadFile(at.Key + ".old-20261126T120000Z")
	if string(old) != string(before) {
		t.Error("backup of ca.key is not the old key")
	}
	if got := mode(t, at.Key); got != 0o600 {
		t.Errorf("forced ca.key mode %04o, want 0600", got)
	}

	// Forced again within the same second: the first backup stays.
	second, _ := os.ReadFile(at.Key)
	w3, err := SetupCA(o, nil, at, "third CA", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(w3.Replaced) != 2 || !strings.HasSuffix(w3.Replaced[0], ".old-20261126T120000Z-2") {
		t.Fatalf("replaced %v, want backups ending -2", w3.Replaced)
	}
	if b, _ := os.ReadFile(w3.Replaced[0]); string(b) != string(second) {
		t.Error("second backup is not the second key")
	}
	if b, _ := os.ReadFile(at.Key + ".old-20261126T120000Z"); string(b) != string(before) {
		t.Error("first backup was overwritten")
	}
}

func TestSetupCARefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := paths(dir, "ca")
	if err := os.Symlink(target, at.Key); err != nil {
		t.Fatal(err)
	}
	for _, force := range []bool{false, true} {
		if _, err := SetupCA(pki.Options{}, nil, at, "x", force); err == nil {
			t.Errorf("force=%v: symlinked ca.key accepted", force)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Error("symlink target was written through")
	}
}

func TestSetupDispatcher(t *testing.T) {
	dir := t.TempDir()
	caAt, dAt := paths(dir, "ca"), paths(dir, "dispatcher")
	o := pki.Options{Now: fixedNow}
	id := DispatcherIdentity{CA: caAt, At: dAt, Days: 365, DNSNames: []string{"control.example.net"}}

	_, err := SetupDispatcher(o, nil, id)
	var missing *MissingCAError
	if !errors.As(err, &missing) {
		t.Fatalf("without a CA: %v, want MissingCAError", err)
	}
	if _, err := os.Lstat(dAt.Key); err == nil {
		t.Fatal("dispatcher.key written without a CA")
	}

	if _, err := SetupCA(o, nil, caAt, "test CA", false); err != nil {
		t.Fatal(err)
	}
	w, err := SetupDispatcher(o, nil, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, dAt.Key); got != 0o600 {
		t.Errorf("dispatcher.key mode %04o", got)
	}
	if got := mode(t, dAt.Cert); got != 0o644 {
		t.Errorf("dispatcher.crt mode %04o", got)
	}
	ca, _ := LoadCA(caAt)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	legacy, err := pki.VerifyDispatcher([]*x509.Certificate{w.Cert}, pool, fixedNow())
	if err != nil || legacy {
		t.Errorf("issued dispatcher cert: legacy=%v err=%v, want a role-SAN dispatcher", legacy, err)
	}
	if want := fixedNow().AddDate(0, 0, 365); !w.Cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want %v", w.Cert.NotAfter, want)
	}
	keyPEM, _ := os.ReadFile(dAt.Key)
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if fp1, _ := pki.Fingerprint(key.Public()); fp1 != mustFP(t, w.Cert) {
		t.Error("dispatcher.key does not match dispatcher.crt")
	}

	if _, err := SetupDispatcher(o, nil, id); !errors.As(err, new(*ExistsError)) {
		t.Errorf("second SetupDispatcher: %v, want ExistsError", err)
	}
}

func mustFP(t *testing.T, c *x509.Certificate) string {
	fp, err := pki.Fingerprint(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}
