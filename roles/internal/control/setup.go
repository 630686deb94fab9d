package control

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

// File modes of SPEC.md §2.
const (
	ModePrivateKey  fs.FileMode = 0o600
	ModeCertificate fs.FileMode = 0o644
	modeConfigDir   fs.FileMode = 0o755
)

// ExistsError says key material is already present and was left as it was.
type ExistsError struct{ Paths []string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%s already exists", strings.Join(e.Paths, " and "))
}

// MissingCAError says there is no CA to sign with.
type MissingCAError struct {
	Path string
	Err  error
}

func (e *MissingCAError) Error() string {
	return fmt.Sprintf("no usable ca at %s: %v", e.Path, e.Err)
}

func (e *MissingCAError) Unwrap() error { return e.Err }

// Pair names where a key and its certificate live.
type Pair struct {
	Cert string
	Key  string
}

// Written describes material that was created.
type Written struct {
	Cert        *x509.Certificate
	Paths       Pair
	Fingerprint string   // sha256 of the certificate
	Replaced    []string // backups of replaced files, when forced
}

// SetupCA creates a new CA key and self-signed certificate. Without force
// it refuses, changing nothing, when either file exists. With force the old
// files are kept beside the new ones as PATH.old-TIMESTAMP.
func SetupCA(o pki.Options, log *zap.Logger, at Pair, commonName string, force bool) (*Written, error) {
	if err := RefuseExisting(at, force); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA(o, commonName)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	w, err := writePair(o, at, ca.Key, ca.Cert, force)
	if err != nil {
		return nil, err
	}
	logging.Event(log, "setup-ca", zap.String("cert", at.Cert), zap.String("serial", pki.FormatSerial(ca.Cert.SerialNumber)),
		zap.String("fingerprint", w.Fingerprint), zap.Bool("replaced", len(w.Replaced) > 0))
	return w, nil
}

// LoadCA reads the CA certificate and key.
func LoadCA(at Pair) (*pki.CA, error) {
	certPEM, err := os.ReadFile(at.Cert)
	if err != nil {
		return nil, &MissingCAError{Path: at.Cert, Err: err}
	}
	keyPEM, err := pki.ReadKeyFile(at.Key, pki.KeyModeOwner)
	if err != nil {
		return nil, &MissingCAError{Path: at.Key, Err: err}
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, &MissingCAError{Path: at.Cert, Err: err}
	}
	return ca, nil
}

// DispatcherIdentity is what SetupDispatcher issues.
type DispatcherIdentity struct {
	CA       Pair     // where the CA lives
	At       Pair     // where the dispatcher key and cert go
	Days     int      // validity (cert_days)
	DNSNames []string // extra DNS SANs (the host name, for 7444 and the API)
	Force    bool
}

// SetupDispatcher issues the dispatcher's own key and certificate from the
// CA. Without Force it refuses, changing nothing, when either file exists.
func SetupDispatcher(o pki.Options, log *zap.Logger, d DispatcherIdentity) (*Written, error) {
	ca, err := LoadCA(d.CA)
	if err != nil {
		return nil, err
	}
	if err := RefuseExisting(d.At, d.Force); err != nil {
		return nil, err
	}
	key, err := pki.GenerateKey(o)
	if err != nil {
		return nil, fmt.Errorf("generate dispatcher key: %w", err)
	}
	cert, err := ca.IssueDispatcher(o, key.Public(), d.Days, d.DNSNames)
	if err != nil {
		return nil, fmt.Errorf("issue dispatcher certificate: %w", err)
	}
	w, err := writePair(o, d.At, key, cert, d.Force)
	if err != nil {
		return nil, err
	}
	logging.Event(log, "setup-dispatcher", zap.String("cert", d.At.Cert), zap.String("serial", pki.FormatSerial(cert.SerialNumber)),
		zap.Time("not_after", cert.NotAfter), zap.Bool("replaced", len(w.Replaced) > 0))
	return w, nil
}

// RefuseExisting returns an *ExistsError when, without force, the key or
// the certificate of at is already present.
func RefuseExisting(at Pair, force bool) error {
	if force {
		return nil
	}
	var present []string
	for _, p := range []string{at.Key, at.Cert} {
		if _, err := os.Lstat(p); err == nil {
			present = append(present, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	if len(present) > 0 {
		return &ExistsError{Paths: present}
	}
	return nil
}

// writePair writes the key, then the certificate. Without force, a file
// that appears meanwhile is never overwritten, and a key written for a
// certificate that could not be written is removed again.
func writePair(o pki.Options, at Pair, key crypto.Signer, cert *x509.Certificate, force bool) (*Written, error) {
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	w := &Written{Cert: cert, Paths: at, Fingerprint: pki.CertFingerprint(cert)}
	for _, p := range []string{at.Key, at.Cert} {
		if err := os.MkdirAll(filepath.Dir(p), modeConfigDir); err != nil {
			return nil, fmt.Errorf("create directory for %s: %w", p, err)
		}
	}
	stamp := now(o).UTC().Format("20060102T150405Z")
	write := func(path string, data []byte, mode fs.FileMode) error {
		if !force {
			return pki.WriteNewFileAtomic(path, data, mode)
		}
		backup, err := keepOld(path, stamp)
		if err != nil {
			return err
		}
		if backup != "" {
			w.Replaced = append(w.Replaced, backup)
		}
		return pki.WriteFileAtomic(path, data, mode)
	}
	if err := write(at.Key, keyPEM, ModePrivateKey); err != nil {
		return nil, fmt.Errorf("write %s: %w", at.Key, err)
	}
	if err := write(at.Cert, pki.CertPEM(cert), ModeCertificate); err != nil {
		if !force {
			_ = os.Remove(at.Key)
		}
		return nil, fmt.Errorf("write %s: %w", at.Cert, err)
	}
	return w, nil
}

// keepOld hard-links an existing file to PATH.old-STAMP (PATH.old-STAMP-N
// when that is taken) so that a forced replacement loses nothing. It returns "" when there was nothing to keep.
func keepOld(path, stamp string) (string, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("check %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("%s is a symlink: refusing to replace it; remove the link and try again", path)
	}
	backup := path + ".old-" + stamp
	for n := 2; ; n++ {
		err := os.Link(path, backup)
		if err == nil {
			return backup, nil
		}
		if !errors.Is(err, fs.ErrExist) || n > 100 {
			return "", fmt.Errorf("keep a copy of %s: %w", path, err)
		}
		backup = fmt.Sprintf("%s.old-%s-%d", path, stamp, n)
	}
}

func now(o pki.Options) time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}
