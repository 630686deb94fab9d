package pki

import (
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// Most permissive modes of the private key files (SPEC §2). Only the group
// and other bits are checked: what the owner may do is the owner's affair.
const (
	KeyModeOwner fs.FileMode = 0o600 // ca.key, dispatcher.key: the owner alone
	KeyModeGroup fs.FileMode = 0o640 // agent.key, api_key: readable by a service group too
)

// maxKeyFile bounds what ReadKeyFile reads: no PEM key is near it.
const maxKeyFile = 1 << 20

// KeyModeError refuses a private key file whose mode gives its group or
// others more than the documented mode allows.
type KeyModeError struct {
	Path string
	Mode fs.FileMode // the file's permission bits
	Max  fs.FileMode // the most they may be
}

func (e *KeyModeError) Error() string {
	return fmt.Sprintf("private key %s has mode %04o: readable or writable beyond %04o, so other users of this host may copy it; fix it with: chmod %o %s (and consider the key compromised if others had access)",
		e.Path, e.Mode, e.Max, e.Max, e.Path)
}

// ReadKeyFile reads the private key file at path after checking, on the
// open file, that its group and other permission bits are within max's; a
// wider mode is a *KeyModeError and nothing is read. A symbolic link is
// followed (secret stores mount keys that way): the mode checked is the
// target's. Windows has no such bits and is not checked.
func ReadKeyFile(path string, max fs.FileMode) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("private key %s is not a regular file", path)
	}
	if err := CheckKeyMode(path, fi.Mode(), max); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("private key %s is larger than %d bytes: not a key", path, maxKeyFile)
	}
	return data, nil
}

// CheckKeyMode returns a *KeyModeError when mode's group or other bits go
// beyond max's.
func CheckKeyMode(path string, mode, max fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	perm := mode.Perm()
	if perm&0o077&^(max&0o077) != 0 {
		return &KeyModeError{Path: path, Mode: perm, Max: max.Perm()}
	}
	return nil
}

// LoadKeyPair is tls.LoadX509KeyPair with the key file read by ReadKeyFile,
// so a key readable beyond max is refused.
func LoadKeyPair(certFile, keyFile string, max fs.FileMode) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := ReadKeyFile(keyFile, max)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
