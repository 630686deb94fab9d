package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/dispatcher-dev/dispatcher/packaging"
)

// entry is one file, directory or symlink of a package, by its path
// without a leading "./" ("usr/bin/dispatcher").
type entry struct {
	name string
	mode fs.FileMode // permission bits
	dir  bool
	link string // symlink target, when not ""
	data []byte
}

// roles are the names the binary answers to besides its own.
var roles = []string{"dispatcher-agent", "dispatcher-api", "dispatcher-pairing"}

// configs are the example configurations shipped as /etc files, by their
// name in package packaging.
var configs = []struct{ example, path string }{
	{"examples/agent.conf", "etc/dispatcher-agent/agent.conf"},
	{"examples/scripts.conf", "etc/dispatcher-agent/scripts.conf"},
	{"examples/dispatcher.conf", "etc/dispatcher/dispatcher.conf"},
}

// rewriteBin points a unit or script at /usr/bin, where packages put the
// binary.
func rewriteBin(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte(packaging.BinDir+"/"), []byte("/usr/bin/"))
}

// contents lists what a package installs: the binary, the role symlinks,
// the service files (systemd units for "deb", OpenRC scripts for "apk"),
// the configurations and the documentation. Parent directories are added
// and the list is sorted, parents first.
func contents(kind string, bin, licence []byte) ([]entry, error) {
	es := []entry{{name: "usr/bin/dispatcher", mode: 0o755, data: bin}}
	for _, r := range roles {
		es = append(es, entry{name: "usr/bin/" + r, mode: 0o777, link: "dispatcher"})
	}
	switch kind {
	case "deb":
		units, err := fs.Glob(packaging.Files, "systemd/*.service")
		if err != nil || len(units) == 0 {
			return nil, fmt.Errorf("no systemd units in package packaging")
		}
		for _, u := range units {
			b, err := packaging.Files.ReadFile(u)
			if err != nil {
				return nil, err
			}
			es = append(es, entry{name: "lib/systemd/system/" + path.Base(u), mode: 0o644, data: rewriteBin(b)})
		}
		es = append(es, entry{name: "usr/share/doc/dispatcher/copyright", mode: 0o644, data: debCopyright(licence)})
	case "apk":
		scripts, err := fs.ReadDir(packaging.Files, "openrc")
		if err != nil || len(scripts) == 0 {
			return nil, fmt.Errorf("no OpenRC scripts in package packaging")
		}
		for _, s := range scripts {
			b, err := packaging.Files.ReadFile("openrc/" + s.Name())
			if err != nil {
				return nil, err
			}
			es = append(es, entry{name: "etc/init.d/" + s.Name(), mode: 0o755, data: rewriteBin(b)})
		}
		es = append(es, entry{name: "usr/share/licenses/dispatcher/LICENCE", mode: 0o644, data: licence})
	default:
		return nil, fmt.Errorf("unknown package kind %q", kind)
	}
	for _, c := range configs {
		b, err := packaging.Files.ReadFile(c.example)
		if err != nil {
			return nil, err
		}
		es = append(es, entry{name: c.path, mode: 0o640, data: b})
	}
	hook, err := packaging.Files.ReadFile("auth-hook.example")
	if err != nil {
		return nil, err
	}
	es = append(es, entry{name: "usr/share/doc/dispatcher/auth-hook.example", mode: 0o644, data: hook})
	return withDirs(es), nil
}

// confDirModes are the directories the maintainer scripts hand to the
// service users; in the archives they are root's, 0750.
var confDirModes = map[string]fs.FileMode{"etc/dispatcher": 0o750, "etc/dispatcher-agent": 0o750}

// withDirs adds every missing parent directory (0755, or its entry of
// confDirModes) and sorts the list so that a directory precedes its
// contents.
func withDirs(es []entry) []entry {
	have := map[string]bool{}
	for _, e := range es {
		have[e.name] = true
	}
	for _, e := range es {
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if have[d] {
				continue
			}
			have[d] = true
			mode, ok := confDirModes[d]
			if !ok {
				mode = 0o755
			}
			es = append(es, entry{name: d, mode: mode, dir: true})
		}
	}
	sort.Slice(es, func(i, j int) bool {
		return strings.ReplaceAll(es[i].name, "/", "\x00") < strings.ReplaceAll(es[j].name, "/", "\x00")
	})
	return es
}

// installedSize is the sum of the file sizes, in bytes.
func installedSize(es []entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(len(e.data))
	}
	return n
}

func debCopyright(licence []byte) []byte {
	var b bytes.Buffer
	b.WriteString("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	b.WriteString("Upstream-Name: dispatcher\n")
	b.WriteString("Source: " + homepage + "\n\n")
	b.WriteString("Files: *\n")
	b.WriteString("Copyright: the dispatcher authors\n")
	b.WriteString("License: AGPL-3.0-only\n")
	for _, line := range strings.Split(strings.TrimRight(string(licence), "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			b.WriteString(" .\n")
		} else {
			b.WriteString(" " + line + "\n")
		}
	}
	return b.Bytes()
}
