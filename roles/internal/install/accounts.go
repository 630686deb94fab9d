package install

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// System ids are chosen from this range, from the top down, as useradd
// --system does.
const (
	minSystemID = 100
	maxSystemID = 999
)

// home is the service users' home: none.
const home = "/nonexistent"

// account is one line of /etc/passwd or /etc/group: its name and id.
type account struct {
	name string
	id   int
}

// readAccounts reads the names and ids of a passwd or group file; a file
// that does not exist has none.
func readAccounts(path string) ([]account, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []account
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		out = append(out, account{name: f[0], id: id})
	}
	return out, sc.Err()
}

func (p *planner) passwd() string    { return p.abs("/etc/passwd") }
func (p *planner) groupFile() string { return p.abs("/etc/group") }

// lookup finds name's id in file.
func lookup(file, name string) (int, bool, error) {
	accts, err := readAccounts(file)
	if err != nil {
		return 0, false, err
	}
	for _, a := range accts {
		if a.name == name {
			return a.id, true, nil
		}
	}
	return 0, false, nil
}

// ids returns the uid of owner and the gid of group as they are under the
// root now; root is 0 everywhere.
func (p *planner) ids(owner, group string) (uid, gid int, err error) {
	if owner != "root" {
		id, ok, err := lookup(p.passwd(), owner)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("user %s is not in %s", owner, p.passwd())
		}
		uid = id
	}
	if group != "root" {
		id, ok, err := lookup(p.groupFile(), group)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("group %s is not in %s", group, p.groupFile())
		}
		gid = id
	}
	return uid, gid, nil
}

// nameOf is the name of id in file, or the number.
func nameOf(file string, id int) string {
	accts, _ := readAccounts(file)
	for _, a := range accts {
		if a.id == id {
			return a.name
		}
	}
	if id == 0 {
		return "root"
	}
	return strconv.Itoa(id)
}

func (p *planner) userName(uid int) string  { return nameOf(p.passwd(), uid) }
func (p *planner) groupName(gid int) string { return nameOf(p.groupFile(), gid) }

// shell is the login shell of the service users: nologin where the root
// has one.
func (p *planner) shell() string {
	for _, s := range []string{"/usr/sbin/nologin", "/sbin/nologin"} {
		if _, err := os.Stat(p.abs(s)); err == nil {
			return s
		}
	}
	if p.root == "/" {
		return "/bin/false"
	}
	return "/usr/sbin/nologin"
}

// tool returns the first of names found, with its path.
func (p *planner) tool(names ...string) (string, string) {
	for _, n := range names {
		if path, err := p.o.LookPath(n); err == nil {
			return n, path
		}
	}
	return "", ""
}

// group creates the system group name: with groupadd or busybox addgroup
// on this host, by adding a line to ROOT/etc/group under another root.
func (p *planner) group(name string) error {
	if _, ok, err := lookup(p.groupFile(), name); err != nil {
		return err
	} else if ok {
		p.add(Action{Skip: fmt.Sprintf("skip create group %s: already exists", name)})
		return nil
	}
	if p.root != "/" {
		file := p.groupFile()
		p.add(Action{Desc: fmt.Sprintf("create group %s in %s", name, file), NeedsRoot: p.chown, do: func() error {
			id, err := p.freeID(-1)
			if err != nil {
				return err
			}
			return appendLine(file, fmt.Sprintf("%s:x:%d:", name, id))
		}})
		return nil
	}
	var args []string
	switch n, path := p.tool("groupadd", "addgroup"); n {
	case "groupadd":
		args = []string{path, "--system", name}
	case "addgroup":
		args = []string{path, "-S", name}
	default:
		return fmt.Errorf("neither groupadd nor addgroup is installed: create the system group %s yourself, then run install again", name)
	}
	p.add(Action{Desc: "create group " + name, NeedsRoot: true, do: func() error { return p.o.Run(args[0], args[1:]...) }})
	return nil
}

// user creates the system user name, in the group of the same name, with
// no home and no login shell.
func (p *planner) user(name string) error {
	if _, ok, err := lookup(p.passwd(), name); err != nil {
		return err
	} else if ok {
		p.add(Action{Skip: fmt.Sprintf("skip create user %s: already exists", name)})
		return nil
	}
	shell := p.shell()
	desc := fmt.Sprintf("create user %s (system, no home, shell %s)", name, shell)
	if p.root != "/" {
		file := p.passwd()
		p.add(Action{Desc: desc + " in " + file, NeedsRoot: p.chown, do: func() error {
			gid, ok, err := lookup(p.groupFile(), name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("group %s is not in %s", name, p.groupFile())
			}
			uid, err := p.freeID(gid)
			if err != nil {
				return err
			}
			return appendLine(file, fmt.Sprintf("%s:x:%d:%d:dispatcher %s:%s:%s", name, uid, gid, p.o.Role, home, shell))
		}})
		return nil
	}
	var args []string
	switch n, path := p.tool("useradd", "adduser"); n {
	case "useradd":
		args = []string{path, "--system", "--gid", name, "--no-create-home", "--home-dir", home, "--shell", shell, "--comment", "dispatcher " + p.o.Role, name}
	case "adduser": // busybox (Alpine)
		args = []string{path, "-S", "-D", "-H", "-h", home, "-s", shell, "-G", name, "-g", "dispatcher " + p.o.Role, name}
	default:
		return fmt.Errorf("neither useradd nor adduser is installed: create the system user %s yourself, then run install again", name)
	}
	p.add(Action{Desc: desc, NeedsRoot: true, do: func() error { return p.o.Run(args[0], args[1:]...) }})
	return nil
}

// freeID picks a system id used by no user and no group under the root,
// prefer when it is free (a user gets its group's id when it can).
func (p *planner) freeID(prefer int) (int, error) {
	taken := map[int]bool{}
	for _, f := range []string{p.passwd(), p.groupFile()} {
		accts, err := readAccounts(f)
		if err != nil {
			return 0, err
		}
		for _, a := range accts {
			taken[a.id] = true
		}
	}
	if prefer >= 0 {
		if uids, err := readAccounts(p.passwd()); err == nil && !hasID(uids, prefer) {
			return prefer, nil
		}
	}
	for id := maxSystemID; id >= minSystemID; id-- {
		if !taken[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free system id between %d and %d", minSystemID, maxSystemID)
}

func hasID(accts []account, id int) bool {
	for _, a := range accts {
		if a.id == id {
			return true
		}
	}
	return false
}

// appendLine adds line to file (created 0644 when missing), atomically.
func appendLine(file, line string) error {
	mode := fs.FileMode(0o644)
	old, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if fi, err := os.Stat(file); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	return pki.WriteFileAtomic(file, append(old, line+"\n"...), mode)
}
