package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testEpoch = 1700000000

var fakeBinary = []byte("#!/bin/sh\necho fake dispatcher\n")

// buildTest writes the packages of a fake binary for GOARCH arch to a new
// directory and returns the paths of the .deb and the .apk.
func buildTest(t *testing.T, arch, version string) (deb, apk string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dispatcher")
	lic := filepath.Join(dir, "LICENCE")
	if err := os.WriteFile(bin, fakeBinary, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lic, []byte("GNU AFFERO GENERAL PUBLIC LICENSE\n\nVersion 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-bin", bin, "-version", version, "-out", filepath.Join(dir, "dist"), "-arch", arch, "-licence", lic, "-epoch", strconv.Itoa(testEpoch)}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("mkpkg %v: exit %d\n%s", args, code, stderr.String())
	}
	files := strings.Fields(stdout.String())
	if len(files) != 2 {
		t.Fatalf("mkpkg printed %q, want the two package paths", stdout.String())
	}
	return files[0], files[1]
}

// tarEntry is what the tests check of an archive entry.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, r io.Reader) ([]string, map[string]tarEntry) {
	t.Helper()
	tr := tar.NewReader(r)
	var names []string
	m := map[string]tarEntry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, m
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		m[h.Name] = tarEntry{h, data}
	}
}

func readTarGz(t *testing.T, b []byte) ([]string, map[string]tarEntry) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return readTar(t, zr)
}

// readAr parses an ar archive in the common format.
func readAr(t *testing.T, b []byte) (names []string, members map[string][]byte) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		t.Fatalf("no ar magic")
	}
	members = map[string][]byte{}
	b = b[8:]
	for len(b) > 0 {
		if len(b) < 60 || string(b[58:60]) != "`\n" {
			t.Fatalf("bad ar header %q", b[:min(60, len(b))])
		}
		name := strings.TrimRight(string(b[:16]), " ")
		size, err := strconv.Atoi(strings.TrimSpace(string(b[48:58])))
		if err != nil || size > len(b)-60 {
			t.Fatalf("bad ar size in %q", b[:60])
		}
		if uid, gid := strings.TrimSpace(string(b[28:34])), strings.TrimSpace(string(b[34:40])); uid != "0" || gid != "0" {
			t.Errorf("ar member %s owned by %s:%s", name, uid, gid)
		}
		names = append(names, name)
		members[name] = b[60 : 60+size]
		b = b[60+size+size%2:]
	}
	return names, members
}

// want lists the entries both packages share, by name without "./", with
// their type and mode.
var wantCommon = map[string]string{
	"usr/bin/dispatcher":                         "file 0755",
	"usr/bin/dispatcher-agent":                   "link dispatcher",
	"usr/bin/dispatcher-api":                     "link dispatcher",
	"usr/bin/dispatcher-pairing":                 "link dispatcher",
	"etc/dispatcher-agent/agent.conf":            "file 0640",
	"etc/dispatcher-agent/scripts.conf":          "file 0640",
	"etc/dispatcher/dispatcher.conf":             "file 0640",
	"etc/dispatcher-agent/":                      "dir 0750",
	"etc/dispatcher/":                            "dir 0750",
	"usr/share/doc/dispatcher/auth-hook.example": "file 0644",
}

func describe(h *tar.Header) string {
	switch h.Typeflag {
	case tar.TypeDir:
		return fmt.Sprintf("dir %04o", h.Mode)
	case tar.TypeSymlink:
		return "link " + h.Linkname
	case tar.TypeReg:
		return fmt.Sprintf("file %04o", h.Mode)
	}
	return fmt.Sprintf("type %c", h.Typeflag)
}

// checkEntries checks the expected entries, the owner and the date of
// every entry, and the rewritten service files.
func checkEntries(t *testing.T, prefix string, m map[string]tarEntry, want map[string]string, services []string) {
	t.Helper()
	for name, w := range want {
		e, ok := m[prefix+name]
		if !ok {
			t.Errorf("no %s%s", prefix, name)
			continue
		}
		if got := describe(e.hdr); got != w {
			t.Errorf("%s%s: %s, want %s", prefix, name, got, w)
		}
	}
	for name, e := range m {
		h := e.hdr
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s owned by %d:%d (%s:%s), want root:root", name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(testEpoch, 0)) {
			t.Errorf("%s dated %v, want SOURCE_DATE_EPOCH %d", name, h.ModTime, testEpoch)
		}
	}
	if got := m[prefix+"usr/bin/dispatcher"].data; !bytes.Equal(got, fakeBinary) {
		t.Errorf("usr/bin/dispatcher is %q, want the binary", got)
	}
	for _, s := range services {
		data := string(m[prefix+s].data)
		if strings.Contains(data, "/usr/local/bin") || !strings.Contains(data, "/usr/bin/dispatcher-") {
			t.Errorf("%s does not run /usr/bin/dispatcher-…:\n%s", s, data)
		}
	}
}

func TestDeb(t *testing.T) {
	debPath, _ := buildTest(t, "amd64", "v1.4.0")
	if got := filepath.Base(debPath); got != "dispatcher_1.4.0_amd64.deb" {
		t.Errorf("deb named %s", got)
	}
	b, err := os.ReadFile(debPath)
	if err != nil {
		t.Fatal(err)
	}
	names, members := readAr(t, b)
	if got := strings.Join(names, " "); got != "debian-binary control.tar.gz data.tar.gz" {
		t.Fatalf("ar members %s", got)
	}
	if string(members["debian-binary"]) != "2.0\n" {
		t.Errorf("debian-binary is %q", members["debian-binary"])
	}

	_, ctl := readTarGz(t, members["control.tar.gz"])
	control := string(ctl["./control"].data)
	for _, f := range []string{"Package: dispatcher", "Version: 1.4.0", "Architecture: amd64", "Maintainer: ", "Description: ", "Section: admin", "Priority: optional", "Installed-Size: "} {
		if !strings.Contains(control, "\n"+f) && !strings.HasPrefix(control, f) {
			t.Errorf("control has no %q:\n%s", f, control)
		}
	}
	if got, want := string(ctl["./conffiles"].data), "/etc/dispatcher-agent/agent.conf\n/etc/dispatcher-agent/scripts.conf\n/etc/dispatcher/dispatcher.conf\n"; got != want {
		t.Errorf("conffiles:\n%s\nwant:\n%s", got, want)
	}
	post := ctl["./postinst"]
	if post.hdr == nil || post.hdr.Mode != 0o755 || !strings.Contains(string(post.data), "adduser --system") {
		t.Errorf("postinst missing, not executable or creates no users")
	}
	if out, err := exec.Command("sh", "-n", "-c", string(post.data)).CombinedOutput(); err != nil {
		t.Errorf("postinst: sh -n: %v\n%s", err, out)
	}

	_, data := readTarGz(t, members["data.tar.gz"])
	want := map[string]string{
		"lib/systemd/system/dispatcher-agent.service": "file 0644",
		"lib/systemd/system/dispatcher-api.service":   "file 0644",
		"usr/share/doc/dispatcher/copyright":          "file 0644",
	}
	for k, v := range wantCommon {
		want[k] = v
	}
	checkEntries(t, "./", data, want, []string{"lib/systemd/system/dispatcher-agent.service", "lib/systemd/system/dispatcher-api.service"})

	dpkgChecks(t, debPath)
}

// dpkgChecks lets dpkg itself read and install the package, where it is
// installed (Debian CI).
func dpkgChecks(t *testing.T, deb string) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Log("no dpkg-deb: the package was checked by the Go readers only")
		return
	}
	out := dpkg(t, "dpkg-deb", "-c", deb)
	for _, p := range []string{"./usr/bin/dispatcher", "./usr/bin/dispatcher-agent -> dispatcher", "./usr/bin/dispatcher-api -> dispatcher", "./usr/bin/dispatcher-pairing -> dispatcher",
		"./lib/systemd/system/dispatcher-agent.service", "./lib/systemd/system/dispatcher-api.service",
		"./etc/dispatcher-agent/agent.conf", "./etc/dispatcher-agent/scripts.conf", "./etc/dispatcher/dispatcher.conf", "root/root"} {
		if !strings.Contains(out, p) {
			t.Errorf("dpkg-deb -c lists no %s:\n%s", p, out)
		}
	}
	out = dpkg(t, "dpkg-deb", "-I", deb)
	for _, f := range []string{" Package: dispatcher\n", " Version: 1.4.0\n", " Architecture: amd64\n", " Section: admin\n", " Priority: optional\n", " Maintainer: ", " Description: "} {
		if !strings.Contains(out, f) {
			t.Errorf("dpkg-deb -I shows no %q:\n%s", f, out)
		}
	}

	// Install into a throw-away root. The postinst sees DPKG_ROOT and
	// creates no users on this host.
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dpkg", "--root="+root, "--force-not-root", "--force-script-chrootless", "--no-triggers", "-i", deb)
	inst, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		if !strings.Contains(string(inst), "installed into "+root) {
			t.Errorf("the postinst did not notice DPKG_ROOT:\n%s", inst)
		}
		if st := dpkg(t, "dpkg", "--root="+root, "-s", "dispatcher"); !strings.Contains(st, "Status: install ok installed") {
			t.Errorf("dpkg -s after install:\n%s", st)
		}
		for _, d := range []string{"var/lib/dispatcher", "var/lib/dispatcher/pairing"} {
			if fi, err := os.Stat(filepath.Join(root, d)); err != nil || fi.Mode().Perm() != 0o750 {
				t.Errorf("postinst: %s: %v %v, want a 0750 directory", d, fi, err)
			}
		}
	case os.Geteuid() != 0:
		// dpkg may refuse ownership changes for a user: unpacking is the
		// documented equivalent.
		t.Logf("dpkg -i as uid %d: %v\n%s\nchecking dpkg-deb -x instead", os.Geteuid(), err, inst)
		dpkg(t, "dpkg-deb", "-x", deb, root)
	default:
		t.Fatalf("dpkg -i into %s: %v\n%s", root, err, inst)
	}
	if got, err := os.ReadFile(filepath.Join(root, "usr/bin/dispatcher")); err != nil || !bytes.Equal(got, fakeBinary) {
		t.Errorf("installed usr/bin/dispatcher: %q, %v", got, err)
	}
	if l, err := os.Readlink(filepath.Join(root, "usr/bin/dispatcher-agent")); err != nil || l != "dispatcher" {
		t.Errorf("installed dispatcher-agent links to %q (%v)", l, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/dispatcher/dispatcher.conf")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("installed dispatcher.conf: %v %v, want mode 0640", fi, err)
	}
}

func dpkg(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestApk(t *testing.T) {
	_, apkPath := buildTest(t, "arm64", "v1.4.0-3-g0123abc")
	if got := filepath.Base(apkPath); got != "dispatcher-1.4.0_p3-r0.apk" {
		t.Errorf("apk named %s", got)
	}
	b, err := os.ReadFile(apkPath)
	if err != nil {
		t.Fatal(err)
	}

	// Two gzip streams: the control segment, then the data. A bytes.Reader
	// is an io.ByteReader, so gzip reads exactly one stream and no further.
	var segments [][]byte
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	start := 0
	for {
		zr.Multistream(false)
		if _, err := io.Copy(io.Discard, zr); err != nil {
			t.Fatal(err)
		}
		end := len(b) - br.Len()
		segments = append(segments, b[start:end])
		start = end
		if err := zr.Reset(br); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(segments) != 2 {
		t.Fatalf("%d gzip streams, want 2 (control, data)", len(segments))
	}

	// Read as one stream (as apk and tar do) it is one tar: control first.
	mz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	names, m := readTar(t, mz)
	if len(names) < 3 || names[0] != ".PKGINFO" {
		t.Fatalf("entries %v: want .PKGINFO first", names)
	}
	info := map[string]string{}
	for _, line := range strings.Split(string(m[".PKGINFO"].data), "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			info[k] = v
		}
	}
	sum := sha256.Sum256(segments[1])
	for k, v := range map[string]string{
		"pkgname": "dispatcher", "pkgver": "1.4.0_p3-r0", "arch": "aarch64", "license": "AGPL-3.0-only",
		"origin": "dispatcher", "url": homepage, "datahash": hex.EncodeToString(sum[:]),
	} {
		if info[k] != v {
			t.Errorf(".PKGINFO %s = %q, want %q", k, info[k], v)
		}
	}
	for _, k := range []string{"size", "pkgdesc"} {
		if info[k] == "" {
			t.Errorf(".PKGINFO has no %s", k)
		}
	}
	if pre := m[".pre-install"]; pre.hdr == nil || pre.hdr.Mode != 0o755 || !strings.Contains(string(pre.data), "adduser -S") {
		t.Errorf(".pre-install missing, not executable or creates no users")
	}
	for _, s := range []string{".pre-install", ".post-install"} {
		if out, err := exec.Command("sh", "-n", "-c", string(m[s].data)).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", s, err, out)
		}
	}

	want := map[string]string{
		"etc/init.d/dispatcher-agent":           "file 0755",
		"etc/init.d/dispatcher-api":             "file 0755",
		"usr/share/licenses/dispatcher/LICENCE": "file 0644",
	}
	for k, v := range wantCommon {
		want[k] = v
	}
	checkEntries(t, "", m, want, []string{"etc/init.d/dispatcher-agent", "etc/init.d/dispatcher-api"})
	if h := m["usr/bin/dispatcher"].hdr; h.PAXRecords["APK-TOOLS.checksum.SHA1"] == "" {
		t.Errorf("usr/bin/dispatcher has no APK-TOOLS.checksum.SHA1")
	}

	if _, err := exec.LookPath("tar"); err == nil {
		out, err := exec.Command("tar", "-tzf", apkPath).Output()
		if err != nil {
			t.Fatalf("tar -tzf: %v", err)
		}
		for _, p := range []string{".PKGINFO", "usr/bin/dispatcher", "usr/bin/dispatcher-agent", "etc/init.d/dispatcher-agent", "etc/dispatcher/dispatcher.conf"} {
			if !strings.Contains("\n"+string(out), "\n"+p+"\n") {
				t.Errorf("tar -tzf lists no %s:\n%s", p, out)
			}
		}
	}
}

func TestReproducible(t *testing.T) {
	deb1, apk1 := buildTest(t, "amd64", "v2.0.0")
	deb2, apk2 := buildTest(t, "amd64", "v2.0.0")
	for _, p := range [][2]string{{deb1, deb2}, {apk1, apk2}} {
		a, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p[1])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ", p[0], p[1])
		}
	}
}

func TestVersions(t *testing.T) {
	date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct{ in, deb, apk string }{
		{"v1.2.3", "1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3", "1.2.3"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234", "1.2.3_p4"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty", "1.2.3_p4"},
		{"v1.2.3-dirty", "1.2.3+dirty", "1.2.3_p0"},
		{"abc1234", "0~abc1234", "0_git20260304"},
		{"42bf3ef-dirty", "0~42bf3ef+dirty", "0_git20260304"},
		{"1.2.3a", "1.2.3a", "1.2.3a"},
		{"dev", "0~dev", "0_git20260304"},
	} {
		got, err := debVersion(tc.in)
		if err != nil || got != tc.deb {
			t.Errorf("debVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.deb)
		}
		if got := apkVersion(tc.in, date); got != tc.apk {
			t.Errorf("apkVersion(%q) = %q, want %q", tc.in, got, tc.apk)
		}
	}
	if _, err := debVersion("1.0 beta"); err == nil {
		t.Errorf("debVersion accepted a space")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-version", "1.0", "-arch", "vax"}, {"-version", "1.0", "extra"}} {
		var stdout, stderr bytes.Buffer
		if code := run(append(args, "-epoch", "0"), &stdout, &stderr); code != 2 {
			t.Errorf("mkpkg %v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-bin", filepath.Join(t.TempDir(), "missing"), "-version", "1.0", "-epoch", "0", "-out", t.TempDir()}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "make build") {
		t.Errorf("missing binary: exit %d, %q; want 1 and a hint", code, stderr.String())
	}
}
