// Command mkpkg builds the Debian (.deb) and Alpine (.apk) packages of
// dispatcher from the one static binary, with no packaging tools
// installed: it writes the ar, tar and gzip streams itself.
//
//	go run ./packaging/mkpkg -bin ./dispatcher -version 1.2.0 -out dist
//
// writes dist/dispatcher_DEBVERSION_ARCH.deb and
// dist/dispatcher-APKVERSION-r0.apk. The files shipped are those of
// package packaging (units, OpenRC scripts, example configurations, the
// example auth hook) with /usr/local/bin rewritten to /usr/bin, plus the
// binary, its role symlinks and the licence. Every entry is owned by
// root:root (numeric 0) and dated SOURCE_DATE_EPOCH, else the time of the
// last commit, so two builds of one binary give identical bytes. The
// maintainer scripts create the users dispatcher and dispatcher-agent and
// hand them their directories, as `dispatcher install` does.
//
// The .apk is not signed: install it with `apk add --allow-untrusted`.
//
// Errors (an unreadable binary, a version that cannot be made a package
// version, a write error) are printed and exit with status 1; usage errors
// exit with status 2.
package main
