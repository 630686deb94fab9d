package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKeyFileModes(t *testing.T) {
	for _, tc := range []struct {
		mode, max fs.FileMode
		ok        bool
	}{
		{0o600, KeyModeOwner, true},
		{0o400, KeyModeOwner, true},
		{0o700, KeyModeOwner, true}, // owner bits are not checked
		{0o640, KeyModeOwner, false},
		{0o604, KeyModeOwner, false},
		{0o620, KeyModeOwner, false},
		{0o644, KeyModeOwner, false},
		{0o640, KeyModeGroup, true},
		{0o600, KeyModeGroup, true},
		{0o660, KeyModeGroup, false},
		{0o644, KeyModeGroup, false},
		{0o641, KeyModeGroup, false},
	} {
		path := filepath.Join(t.TempDir(), "k.key")
		if err := os.WriteFile(path, []byte("KEY"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		data, err := ReadKeyFile(path, tc.max)
		if tc.ok {
			if err != nil || string(data) != "KEY" {
				t.Errorf("mode %04o max %04o: got %q, %v; want the key", tc.mode, tc.max, data, err)
			}
			continue
		}
		var me *KeyModeError
		if !errors.As(err, &me) || data != nil {
			t.Errorf("mode %04o max %04o: got %q, %v; want a *KeyModeError", tc.mode, tc.max, data, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "chmod "+octal(tc.max)+" "+path) {
			t.Errorf("mode %04o: message %q does not say how to fix it", tc.mode, msg)
		}
	}
}

func octal(m fs.FileMode) string {
	s := ""
	for p := uint32(m.Perm()); ; p /= 8 {
		s = string(rune('0'+p%8)) + s
		if p < 8 {
			return s
		}
	}
}

func TestReadKeyFileFollowsLinkAndChecksTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.key")
	if err := os.WriteFile(target, []byte("KEY"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	var me *KeyModeError
	if _, err := ReadKeyFile(link, KeyModeOwner); !errors.As(err, &me) {
		t.Fatalf("0644 target through a link: got %v, want *KeyModeError", err)
	}
	if err := os.Chmod(target, 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadKeyFile(link, KeyModeOwner); err != nil || string(data) != "KEY" {
		t.Fatalf("0600 target through a link: %q, %v", data, err)
	}
}

func TestReadKeyFileRefusesDirectory(t *testing.T) {
	if _, err := ReadKeyFile(t.TempDir(), KeyModeOwner); err == nil {
		t.Fatal("a directory was read as a key")
	}
}
