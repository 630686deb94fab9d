// Package packaging carries the files that ship with the binary: the
// systemd units, the OpenRC scripts, the example configurations and the
// example auth hook, embedded so that `dispatcher install` lays them down
// on a host that has nothing but the binary. Paths in [Files] are relative
// to this directory ("systemd/dispatcher-agent.service").
//
// The units name /usr/local/bin; an installer with another prefix rewrites
// that path ([BinDir]).
package packaging

import "embed"

// Files are the shipped files.
//
//go:embed systemd openrc examples auth-hook.example
var Files embed.FS

// BinDir is the binary directory the units and scripts name.
const BinDir = "/usr/local/bin"
