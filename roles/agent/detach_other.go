//go:build !unix

package agent

import "syscall"

// detached has nothing to add where sessions do not exist.
func detached() *syscall.SysProcAttr { return nil }
