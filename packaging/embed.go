package packaging

import "embed"

// Files are the shipped files.
//
//go:embed systemd openrc examples auth-hook.example
var Files embed.FS

// BinDir is the binary directory the units and scripts name.
const BinDir = "/usr/local/bin"
