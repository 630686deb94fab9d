package main

import (
	"crypto/md5"
	"fmt"
	"strings"
	"time"
)

// debPostinst creates the users and hands them their directories, as
// `dispatcher install` does. Installed into another root (dpkg --root,
// which sets DPKG_ROOT) it only sets modes and says what is left.
const debPostinst = `#!/bin/sh
# dispatcher postinst: the service users and the ownership of their
# directories (the archive holds everything as root:root).
set -e

[ "$1" = configure ] || exit 0
root=${DPKG_ROOT:-}

for d in /var/lib/dispatcher /var/lib/dispatcher/agents /var/lib/dispatcher/runs /var/lib/dispatcher/locks /var/lib/dispatcher/pairing; do
	mkdir -p "$root$d"
	chmod 0750 "$root$d"
done

if [ -n "$root" ]; then
	echo "dispatcher: installed into $root: create the system users dispatcher and dispatcher-agent there and give them their directories (docs/INSTALL.md)"
	exit 0
fi

adduser_system() { # USER HOME
	getent passwd "$1" >/dev/null && return 0
	if command -v adduser >/dev/null 2>&1; then
		adduser --system --group --quiet --home "$2" --no-create-home --shell /usr/sbin/nologin "$1"
	else
		useradd --system --user-group --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
	fi
}
adduser_system dispatcher /var/lib/dispatcher
adduser_system dispatcher-agent /etc/dispatcher-agent

# The agent rewrites its certificate on renewal: its directory is its own.
chown dispatcher-agent:dispatcher-agent /etc/dispatcher-agent
chown root:dispatcher-agent /etc/dispatcher-agent/agent.conf /etc/dispatcher-agent/scripts.conf
chown root:dispatcher /etc/dispatcher /etc/dispatcher/dispatcher.conf
chown -R dispatcher:dispatcher /var/lib/dispatcher

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
echo "dispatcher: pair an agent (dispatcher-agent request-pairing) before enabling dispatcher-agent.service; docs/INSTALL.md"
`

// debPrerm stops the services before the files go.
const debPrerm = `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop dispatcher-agent.service dispatcher-api.service 2>/dev/null || true
fi
`

// buildDeb returns the .deb of es: debian-binary, control.tar.gz (control,
// conffiles, md5sums, postinst, prerm), data.tar.gz.
func buildDeb(es []entry, version, arch string, mtime time.Time) ([]byte, error) {
	var conffiles strings.Builder
	for _, c := range configs {
		conffiles.WriteString("/" + c.path + "\n")
	}
	control := fmt.Sprintf(`Package: dispatcher
Version: %s
Architecture: %s
Maintainer: %s
Installed-Size: %d
Section: admin
Priority: optional
Homepage: %s
Description: %s
%s`, version, arch, maintainer, (installedSize(es)+1023)/1024, homepage, summary, debDescription())
	var sums strings.Builder
	for _, e := range es {
		if !e.dir && e.link == "" {
			fmt.Fprintf(&sums, "%x  %s\n", md5.Sum(e.data), e.name)
		}
	}
	ctl := []entry{
		{name: "control", mode: 0o644, data: []byte(control)},
		{name: "conffiles", mode: 0o644, data: []byte(conffiles.String())},
		{name: "md5sums", mode: 0o644, data: []byte(sums.String())},
		{name: "postinst", mode: 0o755, data: []byte(debPostinst)},
		{name: "prerm", mode: 0o755, data: []byte(debPrerm)},
	}
	ctlTar, err := writeTarGz(append([]entry{{name: ".", mode: 0o755, dir: true}}, ctl...), mtime, tarOptions{prefix: "./", trailer: true})
	if err != nil {
		return nil, err
	}
	dataTar, err := writeTarGz(append([]entry{{name: ".", mode: 0o755, dir: true}}, es...), mtime, tarOptions{prefix: "./", trailer: true})
	if err != nil {
		return nil, err
	}
	return writeAr([]arMember{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", ctlTar},
		{"data.tar.gz", dataTar},
	}, mtime)
}

// debDescription is the long description, each line indented by one
// space, paragraphs separated by " .".
func debDescription() string {
	var b strings.Builder
	for _, line := range strings.Split(description, "\n") {
		if line == "" {
			b.WriteString(" .\n")
		} else {
			b.WriteString(" " + line + "\n")
		}
	}
	return b.String()
}
