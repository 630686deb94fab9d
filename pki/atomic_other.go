//go:build !unix

package pki

import (
	"io/fs"
	"os"
)

func chownLike(*os.File, fs.FileInfo) error { return nil }

func syncDir(string) error { return nil }
