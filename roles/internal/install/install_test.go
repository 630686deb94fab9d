package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// options installs role under a fresh temporary root as the user euid,
// copying a small fake binary; no tool is found and none may run.
func options(t *testing.T, role string, euid int) Options {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "dispatcher-linux-amd64")
	if err := os.WriteFile(exe, []byte("#!binary v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{
		Role: role, Root: t.TempDir(), Exe: exe,
		Geteuid:  func() int { return euid },
		LookPath: func(string) (string, error) { return "", errors.New("not found") },
		Run: func(name string, _ ...string) error {
			t.Errorf("ran %s under a staging root", name)
			return nil
		},
	}
}

func plan(t *testing.T, o Options) *Plan {
	t.Helper()
	p, err := NewPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func apply(t *testing.T, o Options) *Plan {
	t.Helper()
	p := plan(t, o)
	if err := p.Apply(nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func lines(p *Plan, root string) []string {
	var out []string
	for _, a := range p.Actions {
		out = append(out, strings.ReplaceAll(a.String(), root, "ROOT"))
	}
	return out
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %04o, want %04o", path, got, want)
	}
}

// An unprivileged staging install of the agent: the plan, the tree and
// its modes, then a second run with nothing to do.
func TestAgentUnprivileged(t *testing.T) {
	o := options(t, RoleAgent, 1000)
	o.Init = InitSystemd
	p := plan(t, o)
	want := []string{
		"create directory ROOT/usr/local/bin (0755)",
		"copy " + o.Exe + " to ROOT/usr/local/bin/dispatcher (0755)",
		"symlink ROOT/usr/local/bin/dispatcher-agent -> dispatcher",
		"symlink ROOT/usr/local/bin/dispatcher-api -> dispatcher",
		"symlink ROOT/usr/local/bin/dispatcher-pairing -> dispatcher",
		"create group dispatcher-agent in ROOT/etc/group",
		"create user dispatcher-agent (system, no home, shell /usr/sbin/nologin) in ROOT/etc/passwd",
		"create directory ROOT/etc/dispatcher-agent (0750)",
		"write ROOT/etc/dispatcher-agent/agent.conf (0640) from the example",
		"write ROOT/etc/dispatcher-agent/scripts.conf (0640) from the example",
		"write ROOT/etc/systemd/system/dispatcher-agent.service (0644)",
	}
	if d := cmp.Diff(want, lines(p, o.Root)); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
	if got := p.NeedRoot(); got != nil {
		t.Errorf("a staging install needs root for %q", got)
	}
	if _, err := os.Stat(filepath.Join(o.Root, "etc")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("planning changed the root: %v", err)
	}
	if err := p.Apply(nil); err != nil {
		t.Fatal(err)
	}
	r := o.Root
	wantMode(t, r+"/usr/local/bin/dispatcher", 0o755)
	wantMode(t, r+"/etc/dispatcher-agent", 0o750)
	wantMode(t, r+"/etc/dispatcher-agent/agent.conf", 0o640)
	wantMode(t, r+"/etc/dispatcher-agent/scripts.conf", 0o640)
	wantMode(t, r+"/etc/systemd/system/dispatcher-agent.service", 0o644)
	if b, _ := os.ReadFile(r + "/usr/local/bin/dispatcher"); string(b) != "#!binary v1\n" {
		t.Errorf("copied binary holds %q", b)
	}
	for _, l := range Links {
		if got, err := os.Readlink(filepath.Join(r, "usr/local/bin", l)); err != nil || got != "dispatcher" {
			t.Errorf("%s -> %q (%v), want dispatcher", l, got, err)
		}
	}
	if _, err := os.Stat(r + "/var/lib/dispatcher"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the agent got the dispatcher's state directory")
	}
	again := plan(t, o)
	if n := again.Changes(); n != 0 {
		t.Errorf("second run has %d changes:\n%s", n, strings.Join(lines(again, r), "\n"))
	}
}

// A new binary is copied over the old one; the same binary is not.
func TestBinaryUpdated(t *testing.T) {
	o := options(t, RoleAgent, 1000)
	apply(t, o)
	if err := os.WriteFile(o.Exe, []byte("#!binary v2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := apply(t, o)
	if p.Changes() != 1 || !strings.HasPrefix(p.Actions[1].Desc, "copy ") {
		t.Errorf("upgrade plan:\n%s", strings.Join(lines(p, o.Root), "\n"))
	}
	if b, _ := os.ReadFile(o.Root + "/usr/local/bin/dispatcher"); string(b) != "#!binary v2\n" {
		t.Errorf("binary holds %q after the upgrade", b)
	}
}

// An edited configuration file is kept, whatever it holds; its mode is
// brought back to 0640.
func TestEditedConfigKept(t *testing.T) {
	o := options(t, RoleAgent, 1000)
	apply(t, o)
	conf := o.Root + "/etc/dispatcher-agent/agent.conf"
	if err := os.WriteFile(conf, []byte("port = 9443\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(conf, 0o644); err != nil {
		t.Fatal(err)
	}
	p := apply(t, o)
	got := lines(p, o.Root)
	for _, w := range []string{"keep edited ROOT/etc/dispatcher-agent/agent.conf", "set ROOT/etc/dispatcher-agent/agent.conf to 0640 (was 0644)"} {
		if !contains(got, w) {
			t.Errorf("no %q in\n%s", w, strings.Join(got, "\n"))
		}
	}
	if b, _ := os.ReadFile(conf); string(b) != "port = 9443\n" {
		t.Errorf("edited agent.conf now holds %q", b)
	}
	wantMode(t, conf, 0o640)
	if again := plan(t, o); again.Changes() != 0 || !contains(lines(again, o.Root), "keep edited ROOT/etc/dispatcher-agent/agent.conf") {
		t.Errorf("third run:\n%s", strings.Join(lines(again, o.Root), "\n"))
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// The dispatcher and api roles get the state directory; only api a service.
func TestDispatcherAndAPI(t *testing.T) {
	for _, c := range []struct {
		role, unit string
	}{{RoleDispatcher, ""}, {RoleAPI, "dispatcher-api.service"}} {
		t.Run(c.role, func(t *testing.T) {
			o := options(t, c.role, 1000)
			o.Init = InitSystemd
			apply(t, o)
			r := o.Root
			wantMode(t, r+"/etc/dispatcher", 0o750)
			wantMode(t, r+"/etc/dispatcher/dispatcher.conf", 0o640)
			wantMode(t, r+"/var/lib/dispatcher", 0o750)
			for _, s := range []string{"agents", "runs", "locks", "pairing"} {
				wantMode(t, r+"/var/lib/dispatcher/"+s, 0o750)
			}
			units, _ := os.ReadDir(r + "/etc/systemd/system")
			var names []string
			for _, u := range units {
				names = append(names, u.Name())
			}
			if c.unit == "" && len(names) != 0 || c.unit != "" && (len(names) != 1 || names[0] != c.unit) {
				t.Errorf("units %q, want %q", names, c.unit)
			}
			if p := plan(t, o); p.Changes() != 0 {
				t.Errorf("second run:\n%s", strings.Join(lines(p, r), "\n"))
			}
		})
	}
}

// Another prefix is written into the units; OpenRC scripts are 0755.
func TestPrefixRewrite(t *testing.T) {
	for _, c := range []struct{ init, path string }{
		{InitSystemd, "/etc/systemd/system/dispatcher-agent.service"},
		{InitOpenRC, "/etc/init.d/dispatcher-agent"},
	} {
		t.Run(c.init, func(t *testing.T) {
			o := options(t, RoleAgent, 1000)
			o.Init, o.Prefix = c.init, "/opt/dispatcher"
			apply(t, o)
			b, err := os.ReadFile(o.Root + c.path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "/usr/local/bin") || !strings.Contains(string(b), "/opt/dispatcher/bin/dispatcher-agent") {
				t.Errorf("%s does not name /opt/dispatcher/bin:\n%s", c.path, b)
			}
			if _, err := os.Stat(o.Root + "/opt/dispatcher/bin/dispatcher"); err != nil {
				t.Error(err)
			}
			wantMode(t, o.Root+c.path, map[string]os.FileMode{InitSystemd: 0o644, InitOpenRC: 0o755}[c.init])
		})
	}
}

// The init system is found under the root, and none means no unit.
func TestDetectInit(t *testing.T) {
	o := options(t, RoleAgent, 1000)
	if p := plan(t, o); p.Init != InitNone || !strings.Contains(strings.Join(p.Next, "\n"), "no init system found") {
		t.Errorf("empty root: init %q, next %q", p.Init, p.Next)
	}
	if err := os.MkdirAll(o.Root+"/sbin", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.Root+"/sbin/openrc-run", nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if p := plan(t, o); p.Init != InitOpenRC || !contains(p.Next, "rc-update add dispatcher-agent default && rc-service dispatcher-agent start") {
		t.Errorf("openrc root: init %q, next %q", p.Init, p.Next)
	}
	if err := os.MkdirAll(o.Root+"/run/systemd/system", 0o755); err != nil {
		t.Fatal(err)
	}
	if p := plan(t, o); p.Init != InitSystemd || !contains(p.Next, "systemctl daemon-reload && systemctl enable --now dispatcher-agent") {
		t.Errorf("systemd root: init %q, next %q", p.Init, p.Next)
	}
}

// Users and groups under a staging root go into its passwd and group
// files, with a free system id, next to the entries already there.
func TestAccountsInFiles(t *testing.T) {
	o := options(t, RoleAPI, 1000)
	if err := os.MkdirAll(o.Root+"/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.Root+"/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nsvc:x:999:999::/:/sbin/nologin"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.Root+"/etc/group", []byte("root:x:0:\nsvc:x:999:\nother:x:998:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	apply(t, o)
	passwd, _ := os.ReadFile(o.Root + "/etc/passwd")
	group, _ := os.ReadFile(o.Root + "/etc/group")
	wantPasswd := "root:x:0:0:root:/root:/bin/sh\nsvc:x:999:999::/:/sbin/nologin\ndispatcher:x:997:997:dispatcher api:/nonexistent:/usr/sbin/nologin\n"
	wantGroup := "root:x:0:\nsvc:x:999:\nother:x:998:\ndispatcher:x:997:\n"
	if d := cmp.Diff(wantPasswd, string(passwd)); d != "" {
		t.Errorf("passwd (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantGroup, string(group)); d != "" {
		t.Errorf("group (-want +got):\n%s", d)
	}
}

// As root, owners are set from the staged passwd and group: the config
// directory and files are root's with the service group, the state
// directory the service user's.
func TestOwnersAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	o := options(t, RoleDispatcher, 0)
	p := apply(t, o)
	if !contains(lines(p, o.Root), "create directory ROOT/etc/dispatcher (0750 root:dispatcher)") {
		t.Errorf("plan without owners:\n%s", strings.Join(lines(p, o.Root), "\n"))
	}
	uid, gid, err := (&planner{root: o.Root}).ids("dispatcher", "dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][2]int{
		"/etc/dispatcher":                 {0, gid},
		"/etc/dispatcher/dispatcher.conf": {0, gid},
		"/var/lib/dispatcher":             {uid, gid},
		"/var/lib/dispatcher/runs":        {uid, gid},
		"/usr/local/bin/dispatcher":       {0, 0},
	} {
		fi, err := os.Stat(o.Root + path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if got := [2]int{int(st.Uid), int(st.Gid)}; got != want {
			t.Errorf("%s owned by %v, want %v", path, got, want)
		}
	}
	// A wrong owner is put right on the next run.
	if err := os.Chown(o.Root+"/var/lib/dispatcher/locks", 0, 0); err != nil {
		t.Fatal(err)
	}
	again := apply(t, o)
	if !contains(lines(again, o.Root), "set directory ROOT/var/lib/dispatcher/locks to 0750 dispatcher:dispatcher (was 0750 root:root)") {
		t.Errorf("owner not put right:\n%s", strings.Join(lines(again, o.Root), "\n"))
	}
	if p := plan(t, o); p.Changes() != 0 {
		t.Errorf("not idempotent:\n%s", strings.Join(lines(p, o.Root), "\n"))
	}
}

// On this host, a user other than root is told what needs root; planning
// changes nothing. Users and groups are made with the system's tools.
func TestNeedRootOnHost(t *testing.T) {
	var ran [][]string
	o := options(t, RoleAgent, 1000)
	o.Root = "/"
	o.Prefix = filepath.Join(t.TempDir(), "prefix") // a binary dir that does not exist
	o.LookPath = func(n string) (string, error) {
		if n == "useradd" || n == "groupadd" {
			return "/usr/sbin/" + n, nil
		}
		return "", errors.New("not found")
	}
	o.Run = func(name string, args ...string) error {
		ran = append(ran, append([]string{name}, args...))
		return nil
	}
	p := plan(t, o)
	need := p.NeedRoot()
	if len(need) == 0 || len(need) != p.Changes() {
		t.Fatalf("%d of %d changes need root: %q", len(need), p.Changes(), need)
	}
	if !strings.HasPrefix(need[0], "create directory "+o.Prefix+"/bin (0755 root:root)") {
		t.Errorf("first step needing root: %q", need[0])
	}
	if _, err := os.Stat(o.Prefix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("planning created the prefix")
	}
	// The account actions, run on their own, call groupadd and useradd.
	for _, a := range p.Actions {
		if a.Pending() && (strings.HasPrefix(a.Desc, "create group ") || strings.HasPrefix(a.Desc, "create user ")) {
			if err := a.do(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := (&planner{root: "/"}).ids("dispatcher-agent", "dispatcher-agent"); err == nil {
		t.Skip("this host already has dispatcher-agent") // the plan skipped the accounts
	}
	want := [][]string{
		{"/usr/sbin/groupadd", "--system", "dispatcher-agent"},
		{"/usr/sbin/useradd", "--system", "--gid", "dispatcher-agent", "--no-create-home", "--home-dir", "/nonexistent", "--shell", (&planner{root: "/"}).shell(), "--comment", "dispatcher agent", "dispatcher-agent"},
	}
	if d := cmp.Diff(want, ran); d != "" {
		t.Errorf("tools run (-want +got):\n%s", d)
	}
	// Root itself is not refused.
	o.Geteuid = func() int { return 0 }
	if need := plan(t, o).NeedRoot(); need != nil {
		t.Errorf("root is told it needs root for %q", need)
	}
}

func TestBadOptions(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Role = "pairing" }, `unknown role "pairing"`},
		{func(o *Options) { o.Prefix = "usr" }, `prefix "usr" is not an absolute path`},
		{func(o *Options) { o.Init = "upstart" }, `unknown init system "upstart"`},
	} {
		o := options(t, RoleAgent, 1000)
		c.mod(&o)
		if _, err := NewPlan(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}
