// Package packaging carries the files that ship with the binary: the
// systemd units, the OpenRC scripts, the example configurations and the
// example auth hook, embedded so that `dispatcher install` lays them down
// on a host that has nothing but the binary. Paths in [Files] are relative
// to this directory ("systemd/dispatcher-agent.service").
//
// The units name /usr/local/bin; an installer with another prefix rewrites
// that path ([BinDir]).
package packaging
