package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dispatcher-dev/dispatcher/packaging"
	"github.com/dispatcher-dev/dispatcher/pki"
)

// The roles install knows and the init systems it writes services for.
const (
	RoleDispatcher = "dispatcher"
	RoleAgent      = "agent"
	RoleAPI        = "api"

	InitSystemd = "systemd"
	InitOpenRC  = "openrc"
	InitNone    = "none"
)

// DefaultPrefix is where the binary goes without Options.Prefix: PREFIX/bin.
const DefaultPrefix = "/usr/local"

// Options say what to install where. The zero value installs the
// dispatcher role under /usr/local on this host.
type Options struct {
	Role   string // RoleDispatcher (default), RoleAgent or RoleAPI
	Prefix string // absolute; the binary goes to PREFIX/bin (default /usr/local)
	Root   string // everything is laid down under Root, like DESTDIR (default /)
	Init   string // InitSystemd, InitOpenRC or InitNone; empty: detected under Root

	// Exe is the binary to copy; empty means the running one (os.Executable).
	Exe string
	// Geteuid returns the effective user id (nil: os.Geteuid); tests
	// replace it to see what an unprivileged run does.
	Geteuid func() int
	// LookPath finds useradd and friends (nil: exec.LookPath).
	LookPath func(string) (string, error)
	// Run runs a tool that creates a user or group (nil: os/exec).
	Run func(name string, args ...string) error
}

// role is what one role needs on the host.
type role struct {
	user      string   // service user, and its group of the same name
	confDir   string   // configuration directory
	confOwner string   // owner of confDir: root, or the user when the service writes there
	configs   []string // config files copied from packaging/examples when missing
	stateDir  string   // owned by the user; empty: none
	stateSubs []string // directories inside stateDir
	service   string   // unit name; empty: the role runs no service
}

var roles = map[string]role{
	RoleAgent: {
		// The agent rewrites its certificate (renewal) and revocation list
		// (push) in its configuration directory, so it owns that directory;
		// the files the operator writes stay root's.
		user: "dispatcher-agent", confDir: "/etc/dispatcher-agent", confOwner: "dispatcher-agent",
		configs: []string{"agent.conf", "scripts.conf"},
		service: "dispatcher-agent",
	},
	RoleDispatcher: {
		user: "dispatcher", confDir: "/etc/dispatcher", confOwner: "root",
		configs:  []string{"dispatcher.conf"},
		stateDir: "/var/lib/dispatcher", stateSubs: []string{"agents", "runs", "locks", "pairing"},
	},
	RoleAPI: {
		user: "dispatcher", confDir: "/etc/dispatcher", confOwner: "root",
		configs:  []string{"dispatcher.conf"},
		stateDir: "/var/lib/dispatcher", stateSubs: []string{"agents", "runs", "locks", "pairing"},
		service: "dispatcher-api",
	},
}

// Links are the role symlinks made beside the binary, all pointing to it.
var Links = []string{"dispatcher-agent", "dispatcher-api", "dispatcher-pairing"}

// Action is one step of a plan.
type Action struct {
	// Desc says what the action does, on one line:
	// "create directory /etc/dispatcher-agent (0750 dispatcher-agent:dispatcher-agent)".
	Desc string
	// Skip is empty when the action has something to do; otherwise it is
	// the line that says why not ("skip …: already …", "keep edited …").
	Skip string
	// NeedsRoot is set on a pending action that only root can carry out.
	NeedsRoot bool

	do func() error
}

// Pending reports whether the action changes something.
func (a Action) Pending() bool { return a.Skip == "" }

// String is the line printed for the action.
func (a Action) String() string {
	if a.Pending() {
		return a.Desc
	}
	return a.Skip
}

// Plan is what an install does, in order.
type Plan struct {
	Actions []Action
	Role    string
	Init    string   // the init system the service is written for
	Next    []string // what the operator does next, one command or hint a line

	euid int
}

// Changes counts the pending actions.
func (p *Plan) Changes() int {
	n := 0
	for _, a := range p.Actions {
		if a.Pending() {
			n++
		}
	}
	return n
}

// NeedRoot lists the pending actions that need root when the plan would be
// applied by a user other than root; nil when running as root.
func (p *Plan) NeedRoot() []string {
	if p.euid == 0 {
		return nil
	}
	var out []string
	for _, a := range p.Actions {
		if a.Pending() && a.NeedsRoot {
			out = append(out, a.Desc)
		}
	}
	return out
}

// Apply carries out the pending actions in order and stops at the first
// error. report, when not nil, is called for every action in order: after
// it was carried out, or at its turn when it had nothing to do.
func (p *Plan) Apply(report func(Action)) error {
	for _, a := range p.Actions {
		if a.Pending() {
			if err := a.do(); err != nil {
				return fmt.Errorf("%s: %w", a.Desc, err)
			}
		}
		if report != nil {
			report(a)
		}
	}
	return nil
}

// planner builds a plan.
type planner struct {
	o     Options
	r     role
	root  string
	chown bool // set owners: running as root, or installing on this host
	plan  *Plan
}

// NewPlan looks at the host under o.Root and returns what installing
// o.Role there takes.
func NewPlan(o Options) (*Plan, error) {
	if o.Role == "" {
		o.Role = RoleDispatcher
	}
	r, ok := roles[o.Role]
	if !ok {
		return nil, fmt.Errorf("unknown role %q: use dispatcher, agent or api", o.Role)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !filepath.IsAbs(o.Prefix) {
		return nil, fmt.Errorf("prefix %q is not an absolute path", o.Prefix)
	}
	o.Prefix = filepath.Clean(o.Prefix)
	if o.Root == "" {
		o.Root = "/"
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", o.Root, err)
	}
	if o.Geteuid == nil {
		o.Geteuid = os.Geteuid
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Run == nil {
		o.Run = runTool
	}
	if o.Exe == "" {
		if o.Exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the running binary: %w", err)
		}
	}
	euid := o.Geteuid()
	p := &planner{o: o, r: r, root: root, chown: euid == 0 || root == "/", plan: &Plan{Role: o.Role, euid: euid}}
	if err := p.build(); err != nil {
		return nil, err
	}
	return p.plan, nil
}

func (p *planner) build() error {
	bin := filepath.Join(p.o.Prefix, "bin")
	if err := p.dir(bin, 0o755, "root", "root", false); err != nil {
		return err
	}
	if err := p.binary(filepath.Join(bin, "dispatcher")); err != nil {
		return err
	}
	for _, l := range Links {
		if err := p.symlink(filepath.Join(bin, l), "dispatcher"); err != nil {
			return err
		}
	}
	if err := p.group(p.r.user); err != nil {
		return err
	}
	if err := p.user(p.r.user); err != nil {
		return err
	}
	if err := p.dir(p.r.confDir, 0o750, p.r.confOwner, p.r.user, true); err != nil {
		return err
	}
	for _, c := range p.r.configs {
		if err := p.config(filepath.Join(p.r.confDir, c), "examples/"+c); err != nil {
			return err
		}
	}
	if p.r.stateDir != "" {
		if err := p.dir(p.r.stateDir, 0o750, p.r.user, p.r.user, true); err != nil {
			return err
		}
		for _, s := range p.r.stateSubs {
			if err := p.dir(filepath.Join(p.r.stateDir, s), 0o750, p.r.user, p.r.user, true); err != nil {
				return err
			}
		}
	}
	if err := p.service(); err != nil {
		return err
	}
	p.next()
	return nil
}

// abs is path (absolute on the target host) under the root.
func (p *planner) abs(path string) string { return filepath.Join(p.root, path) }

func (p *planner) add(a Action) { p.plan.Actions = append(p.plan.Actions, a) }

// attrs is "0750 root:dispatcher", or "0750" when owners are not set.
func (p *planner) attrs(mode fs.FileMode, owner, group string) string {
	if !p.chown {
		return fmt.Sprintf("%04o", mode)
	}
	return fmt.Sprintf("%04o %s:%s", mode, owner, group)
}

// needsRoot: on this host everything does; under another root only what
// sets owners.
func (p *planner) needsRoot() bool { return p.root == "/" || p.chown }

// setAttrs gives path its mode and, when owners are set, its owner and
// group, looked up now (an earlier action may just have created them).
func (p *planner) setAttrs(path string, mode fs.FileMode, owner, group string) error {
	if p.chown {
		uid, gid, err := p.ids(owner, group)
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return err
		}
	}
	return os.Chmod(path, mode)
}

// attrsOK reports whether fi already has the mode and owners wanted, and
// if not, what it has.
func (p *planner) attrsOK(fi fs.FileInfo, mode fs.FileMode, owner, group string) (bool, string) {
	has := fmt.Sprintf("%04o", fi.Mode().Perm())
	ok := fi.Mode().Perm() == mode
	if p.chown {
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st != nil {
			has += fmt.Sprintf(" %s:%s", p.userName(int(st.Uid)), p.groupName(int(st.Gid)))
			uid, gid, err := p.ids(owner, group)
			if err != nil || int(st.Uid) != uid || int(st.Gid) != gid {
				ok = false
			}
		}
	}
	return ok, has
}

// dir makes sure directory path exists with mode and owners; fix says
// whether an existing directory's mode and owners are brought to them
// (false for shared directories such as /usr/local/bin).
func (p *planner) dir(path string, mode fs.FileMode, owner, group string, fix bool) error {
	full := p.abs(path)
	want := p.attrs(mode, owner, group)
	fi, err := os.Stat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(Action{
			Desc:      fmt.Sprintf("create directory %s (%s)", full, want),
			NeedsRoot: p.needsRoot(),
			do: func() error {
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					return err
				}
				if err := os.Mkdir(full, mode); err != nil {
					return err
				}
				return p.setAttrs(full, mode, owner, group)
			},
		})
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory: move it away first", full)
	}
	if ok, has := p.attrsOK(fi, mode, owner, group); !ok && fix {
		p.add(Action{
			Desc:      fmt.Sprintf("set directory %s to %s (was %s)", full, want, has),
			NeedsRoot: p.needsRoot(),
			do:        func() error { return p.setAttrs(full, mode, owner, group) },
		})
		return nil
	}
	p.add(Action{Skip: fmt.Sprintf("skip create directory %s: already exists", full)})
	return nil
}

// binary copies the running executable to path, atomically.
func (p *planner) binary(path string) error {
	full := p.abs(path)
	data, err := os.ReadFile(p.o.Exe)
	if err != nil {
		return fmt.Errorf("read the running binary: %w", err)
	}
	desc := fmt.Sprintf("copy %s to %s (0755)", p.o.Exe, full)
	fi, err := os.Lstat(full)
	switch {
	case err == nil && fi.Mode().IsRegular():
		old, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		if bytes.Equal(old, data) && fi.Mode().Perm() == 0o755 {
			p.add(Action{Skip: fmt.Sprintf("skip copy %s: %s is already identical", p.o.Exe, full)})
			return nil
		}
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		desc += " (replaces the symbolic link)"
	case err == nil:
		return fmt.Errorf("%s exists and is not a regular file: move it away first", full)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	p.add(Action{Desc: desc, NeedsRoot: p.needsRoot(), do: func() error {
		if fi, err := os.Lstat(full); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if err := os.Remove(full); err != nil {
				return err
			}
		}
		if err := pki.WriteFileAtomic(full, data, 0o755); err != nil {
			return err
		}
		return p.setAttrs(full, 0o755, "root", "root")
	}})
	return nil
}

// symlink makes path a symbolic link to target (relative), replacing
// whatever file is there.
func (p *planner) symlink(path, target string) error {
	full := p.abs(path)
	desc := fmt.Sprintf("symlink %s -> %s", full, target)
	fi, err := os.Lstat(full)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory: move it away first", full)
	case err == nil:
		if t, _ := os.Readlink(full); fi.Mode()&fs.ModeSymlink != 0 && t == target {
			p.add(Action{Skip: fmt.Sprintf("skip symlink %s: already points to %s", full, target)})
			return nil
		}
		desc += " (replaces the existing file)"
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	p.add(Action{Desc: desc, NeedsRoot: p.needsRoot(), do: func() error {
		tmp := filepath.Join(filepath.Dir(full), "."+filepath.Base(full)+".tmp-link")
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, full); err != nil {
			_ = os.Remove(tmp)
			return err
		}
		return nil
	}})
	return nil
}

// config writes the shipped example to path when path does not exist, and
// never touches an existing file's content.
func (p *planner) config(path, example string) error {
	full := p.abs(path)
	data, err := packaging.Files.ReadFile(example)
	if err != nil {
		return fmt.Errorf("shipped %s: %w", example, err)
	}
	const mode = 0o640
	owner, group := "root", p.r.user
	want := p.attrs(mode, owner, group)
	fi, err := os.Lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(Action{
			Desc:      fmt.Sprintf("write %s (%s) from the example", full, want),
			NeedsRoot: p.needsRoot(),
			do: func() error {
				if err := pki.WriteNewFileAtomic(full, data, mode); err != nil {
					return err
				}
				return p.setAttrs(full, mode, owner, group)
			},
		})
		return nil
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s exists and is not a regular file: move it away first", full)
	}
	old, err := os.ReadFile(full)
	if err != nil {
		return err
	}
	if bytes.Equal(old, data) {
		p.add(Action{Skip: fmt.Sprintf("skip write %s: already the example", full)})
	} else {
		p.add(Action{Skip: fmt.Sprintf("keep edited %s", full)})
	}
	if ok, has := p.attrsOK(fi, mode, owner, group); !ok {
		p.add(Action{
			Desc:      fmt.Sprintf("set %s to %s (was %s)", full, want, has),
			NeedsRoot: p.needsRoot(),
			do:        func() error { return p.setAttrs(full, mode, owner, group) },
		})
	}
	return nil
}

// detectInit picks the init system: the one asked for, else systemd when
// ROOT/run/systemd/system exists, OpenRC when ROOT/sbin/openrc-run does.
func (p *planner) detectInit() (string, error) {
	switch p.o.Init {
	case InitSystemd, InitOpenRC, InitNone:
		return p.o.Init, nil
	case "":
	default:
		return "", fmt.Errorf("unknown init system %q: use systemd, openrc or none", p.o.Init)
	}
	if fi, err := os.Stat(p.abs("/run/systemd/system")); err == nil && fi.IsDir() {
		return InitSystemd, nil
	}
	if _, err := os.Stat(p.abs("/sbin/openrc-run")); err == nil {
		return InitOpenRC, nil
	}
	return InitNone, nil
}

// service writes the role's systemd unit or OpenRC script, with
// /usr/local/bin rewritten to PREFIX/bin. Services are neither enabled nor
// started.
func (p *planner) service() error {
	sys, err := p.detectInit()
	if err != nil {
		return err
	}
	p.plan.Init = sys
	if p.r.service == "" || sys == InitNone {
		return nil
	}
	src, path, mode := "systemd/"+p.r.service+".service", "/etc/systemd/system/"+p.r.service+".service", fs.FileMode(0o644)
	if sys == InitOpenRC {
		src, path, mode = "openrc/"+p.r.service, "/etc/init.d/"+p.r.service, 0o755
	}
	data, err := packaging.Files.ReadFile(src)
	if err != nil {
		return fmt.Errorf("shipped %s: %w", src, err)
	}
	data = RewriteBinDir(data, filepath.Join(p.o.Prefix, "bin"))
	full := p.abs(path)
	desc := fmt.Sprintf("write %s (%04o)", full, mode)
	fi, err := os.Lstat(full)
	switch {
	case err == nil && fi.Mode().IsRegular():
		old, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		if ok, _ := p.attrsOK(fi, mode, "root", "root"); ok && bytes.Equal(old, data) {
			p.add(Action{Skip: fmt.Sprintf("skip write %s: already up to date", full)})
			return nil
		}
		desc = fmt.Sprintf("update %s (%04o)", full, mode)
	case err == nil:
		return fmt.Errorf("%s exists and is not a regular file: move it away first", full)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	p.add(Action{Desc: desc, NeedsRoot: p.needsRoot(), do: func() error {
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(full, data, mode); err != nil {
			return err
		}
		return p.setAttrs(full, mode, "root", "root")
	}})
	return nil
}

// RewriteBinDir replaces the binary directory the shipped units name
// (packaging.BinDir) with bin.
func RewriteBinDir(unit []byte, bin string) []byte {
	if bin == packaging.BinDir {
		return unit
	}
	return bytes.ReplaceAll(unit, []byte(packaging.BinDir+"/"), []byte(bin+"/"))
}

// next fills in what the operator does after the install.
func (p *planner) next() {
	bin := filepath.Join(p.o.Prefix, "bin")
	var next []string
	switch p.o.Role {
	case RoleAgent:
		next = append(next, fmt.Sprintf("sudo -u %s %s request-pairing --dispatcher HOST   # pair with the dispatcher, then:", p.r.user, filepath.Join(bin, "dispatcher-agent")))
	default:
		next = append(next, fmt.Sprintf("%s setup-ca && %s setup-dispatcher   # once, on the control host", filepath.Join(bin, "dispatcher"), filepath.Join(bin, "dispatcher")),
			fmt.Sprintf("chown %s /etc/dispatcher/ca.key /etc/dispatcher/dispatcher.key   # the keys (0600) for the service user, which renews and signs", p.r.user))
	}
	if p.r.service != "" {
		switch p.plan.Init {
		case InitSystemd:
			next = append(next, "systemctl daemon-reload && systemctl enable --now "+p.r.service)
		case InitOpenRC:
			next = append(next, fmt.Sprintf("rc-update add %s default && rc-service %s start", p.r.service, p.r.service))
		default:
			next = append(next, fmt.Sprintf("no init system found (use --init systemd or openrc): start %s under your service manager", filepath.Join(bin, p.r.service)))
		}
	}
	p.plan.Next = next
}

// runTool runs name with args and returns its output with the error.
func runTool(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
